// Every Redis key name in one place. The prefix lets several test clusters share one Redis.

export type Keys = ReturnType<typeof redisKeys>;

export function redisKeys(p: string) {
  return {
    /** hash {uid, name, exp}: a session, by sha256(token); TTL = session TTL. */
    session: (sid: string) => `${p}sess:${sid}`,
    /** hash userId → userName, for member lists and direct-message targets. */
    userNames: `${p}unames`,
    /** counter of password checks for a lower-cased user name from one client address; TTL = lock window. */
    loginFailures: (nameLower: string, addr: string) => `${p}lf:${addr}:${nameLower}`,
    /** counter of logins and registrations from one client address; TTL = IM_AUTH_ADDR_WINDOW. */
    authByAddr: (addr: string) => `${p}la:${addr}`,
    /** string "<last ms> <tokens>": send token bucket of a user (rb:, was the hash rl: before 30 Nov). */
    rate: (uid: number) => `${p}rb:${uid}`,
    /** "id|seq|ts" of the first acceptance of a clientMsgId (or an internal retry key). */
    idem: (uid: number, conv: string, key: string) => `${p}idem:${uid}:${conv}:${key}`,
    /** hash {seq, ts, "s:<userId>"…}: last seq and its time in a conversation; (v1.1) per sender, the last seq they sent (ownSeqField). */
    conv: (conv: string) => `${p}conv:${conv}`,
    /** zset seq → packed message: accepted but not yet in MySQL (history reads it first). */
    pending: (conv: string) => `${p}pend:${conv}`,
    /** set of convs a user has joined, posted to or received a direct message in. */
    userConvs: (uid: number) => `${p}uc:${uid}`,
    /** Seq-fence epoch (logic/seq-fence.ts) of the Redis server that merged userConvs(uid) with MySQL's user_conversations (logic/conversations.ts). */
    userConvsChecked: (uid: number) => `${p}ucx:${uid}`,
    /** Redis stream of partition n: messages, presence and kick events. */
    stream: (part: number) => `${p}s:${part}`,
    /** hash userId → open joined connections in a room (all instances). */
    roomMembers: (room: string) => `${p}rm:${room}`,
    /** hash instanceId → joined connections in a room on that connect instance. */
    roomInstances: (room: string) => `${p}ri:${room}`,
    /** hash instanceId → open connections of a user on that connect instance. */
    userInstances: (uid: number) => `${p}ui:${uid}`,
    /** hash "r|room|uid" or "u|uid" → count: what one connect instance holds, for cleanup when it dies. */
    instanceHoldings: (inst: string) => `${p}ih:${inst}`,
    /** set of connect instance ids that hold presence state. */
    instances: `${p}instances`,
    /** (v1.1) hash conv → readSeq of a user, plus field "_" once loaded from MySQL (see logic/read.ts). */
    readSeqs: (uid: number) => `${p}rd:${uid}`,
    /** (v1.1) set of readSeqs keys changed since their last write to MySQL. */
    readDirty: `${p}rdd`,
    /** (v1.1) hash readSeqs key → ms a flusher claimed it: in MySQL write now, reclaimed when stale. */
    readClaims: `${p}rdc`,
    /** (v1.1) "1" while a user's typing in a conversation was relayed within the last 2 s. */
    typingGate: (uid: number, conv: string) => `${p}ty:${uid}:${conv}`,
  };
}

/** (v1.1) The conv hash field holding the last seq userId sent there (their own-send read position). */
export const ownSeqField = (userId: number) => `s:${userId}`;

/** Stream partition of a conversation (FNV-1a 32-bit of the conv id). Every event of one conv goes to one partition. */
export function partitionOf(conv: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < conv.length; i++) {
    h ^= conv.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}
