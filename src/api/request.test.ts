import { expect, test } from "bun:test";
import { shapeMessage } from "./request.ts";

test("a schema failure names the part, the field and TypeBox's rule", () => {
  expect(shapeMessage("body", { path: "/seq", message: "Expected number" })).toBe("request does not match the expected shape: body.seq: Expected number");
  expect(shapeMessage("query", { path: "/name", message: "Expected required property" })).toBe("request does not match the expected shape: query.name: Expected required property");
  expect(shapeMessage("body", { path: "/items/2/a~1b~0c", message: "Expected string" })).toBe("request does not match the expected shape: body.items.2.a/b~c: Expected string");
  expect(shapeMessage("body", { path: "", message: "Expected object" })).toBe("request does not match the expected shape: body: Expected object");
});

test("without a part or an error it says only that the shape is wrong; a long path is cut at 80 characters", () => {
  expect(shapeMessage(undefined, { path: "/seq", message: "Expected number" })).toBe("request does not match the expected shape");
  expect(shapeMessage("body", undefined)).toBe("request does not match the expected shape");
  const long = shapeMessage("body", { path: `/${"k".repeat(5000)}`, message: "Unexpected property" });
  expect(long).toBe(`request does not match the expected shape: body.${"k".repeat(75)}: Unexpected property`);
});
