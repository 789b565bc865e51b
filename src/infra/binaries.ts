// Finding the infrastructure programs: on PATH, or where Debian puts daemons (/usr/sbin is
// often not on a non-root PATH).
import { existsSync } from "node:fs";

const SBIN_DIRS = ["/usr/sbin", "/usr/local/sbin", "/usr/libexec"];

/** Absolute path of the first of names found; throws a message saying what to install. */
export function findBinary(names: string[], pkg: string): string {
  for (const name of names) {
    const onPath = Bun.which(name);
    if (onPath) return onPath;
    for (const dir of SBIN_DIRS) if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  throw new Error(
    `${names[0]} not found on PATH or in ${SBIN_DIRS.join(", ")}: install ${pkg} ` +
      `(sh scripts/setup.sh does it on Debian/Ubuntu as root), or run the stack with docker compose`,
  );
}

export const isRoot = () => process.getuid?.() === 0;
