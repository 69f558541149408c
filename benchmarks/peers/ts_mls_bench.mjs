// JSON-lines benchmark driver around ts-mls for benchmarks/peers/ts_mls_peer.py.
// It only *calls* ts-mls's public API (imported from tests/interop/node/node_modules).
//
// One JSON request per stdin line, one JSON response per stdout line, in order:
// {"id", "cmd", ...args} -> {"id", "ok": true, ...} | {"id", "ok": false, "error"}.
// Bytes are hex.  Every timed command measures with performance.now() *inside* node,
// around exactly the part the benchmark row covers (hex conversion for the pipe is
// outside), and answers {"elapsed": seconds}.
//
//   make_members {count, first_index}       -> {members: [handle], key_packages: [hex]}
//   create_and_add {creator, group_id, key_packages} -> {elapsed, group, welcome}
//       timed: decode KeyPackage MLSMessages, createGroup, createCommit (adds, public,
//       ratchet_tree extension), encode Commit and Welcome
//   join {member, welcome}                  -> {elapsed, group}   timed: decode + joinGroup
//   commit_empty {group}                    -> {elapsed, commit, has_path}  timed: createCommit + encode
//   process {group, commit}                 -> {elapsed}          timed: decode + processMessage
//   app {sender, receiver, count, size}     -> {elapsed}          encrypt+encode, decode+process
//   state_size {group}                      -> {bytes}            encodeGroupState length
//   free {handle} / shutdown

import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

const MODULES = new URL("../../tests/interop/node/node_modules/", import.meta.url);
const mls = await import(new URL("ts-mls/dist/src/index.js", MODULES));
const VERSION = JSON.parse(readFileSync(new URL("ts-mls/package.json", MODULES), "utf8")).version;

const cs = await mls.getCiphersuiteImpl(
  mls.getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"));

const toHex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (hex) => new Uint8Array(Buffer.from(hex, "hex"));

const handles = new Map();
let next = 1;
const store = (value) => { const h = `h${next++}`; handles.set(h, value); return h; };
const get = (h) => {
  const v = handles.get(h);
  if (v === undefined) throw new Error(`no handle ${h}`);
  return v;
};

function decode(bytes) {
  const decoded = mls.decodeMlsMessage(bytes, 0);
  if (decoded === undefined) throw new Error("ts-mls cannot decode this MLSMessage");
  return decoded[0];
}

const commands = {
  async info() {
    return { version: VERSION };
  },

  async make_members({ count, first_index = 0 }) {
    const members = [];
    const keyPackages = [];
    for (let i = first_index; i < first_index + count; i++) {
      const credential = { credentialType: "basic", identity: new TextEncoder().encode(`member ${i}`) };
      const kp = await mls.generateKeyPackage(
        credential, mls.defaultCapabilities(), mls.defaultLifetime, [], cs);
      members.push(store(kp));
      keyPackages.push(toHex(mls.encodeMlsMessage(
        { version: "mls10", wireformat: "mls_key_package", keyPackage: kp.publicPackage })));
    }
    return { members, key_packages: keyPackages };
  },

  async create_and_add({ creator, group_id, key_packages }) {
    const kp = get(creator);
    const raw = key_packages.map(fromHex);
    const groupId = fromHex(group_id);
    const start = performance.now();
    const adds = raw.map((bytes) => ({
      proposalType: "add", add: { keyPackage: decode(bytes).keyPackage },
    }));
    const state = await mls.createGroup(groupId, kp.publicPackage, kp.privatePackage, [], cs);
    const result = await mls.createCommit(
      { state, cipherSuite: cs },
      { wireAsPublicMessage: true, extraProposals: adds, ratchetTreeExtension: true });
    mls.encodeMlsMessage(result.commit);
    const welcome = mls.encodeMlsMessage(
      { version: "mls10", wireformat: "mls_welcome", welcome: result.welcome });
    const elapsed = (performance.now() - start) / 1000;
    return { elapsed, group: store(result.newState), welcome: toHex(welcome) };
  },

  async join({ member, welcome }) {
    const kp = get(member);
    const bytes = fromHex(welcome);
    const start = performance.now();
    const state = await mls.joinGroup(
      decode(bytes).welcome, kp.publicPackage, kp.privatePackage, mls.emptyPskIndex, cs);
    const elapsed = (performance.now() - start) / 1000;
    return { elapsed, group: store(state) };
  },

  async commit_empty({ group }) {
    const state = get(group);
    const start = performance.now();
    const result = await mls.createCommit({ state, cipherSuite: cs }, { wireAsPublicMessage: true });
    const bytes = mls.encodeMlsMessage(result.commit);
    const elapsed = (performance.now() - start) / 1000;
    handles.set(group, result.newState);
    const body = result.commit.publicMessage?.content?.commit;
    return { elapsed, commit: toHex(bytes), has_path: body?.path !== undefined };
  },

  async process({ group, commit }) {
    const state = get(group);
    const bytes = fromHex(commit);
    const start = performance.now();
    const result = await mls.processMessage(
      decode(bytes), state, mls.emptyPskIndex, mls.acceptAll, cs);
    const elapsed = (performance.now() - start) / 1000;
    handles.set(group, result.newState);
    return { elapsed };
  },

  async app({ sender, receiver, count, size }) {
    let s = get(sender);
    let r = get(receiver);
    const payload = new Uint8Array(size).fill(0xa5);
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      const sent = await mls.createApplicationMessage(s, payload, cs);
      s = sent.newState;
      const bytes = mls.encodeMlsMessage(
        { version: "mls10", wireformat: "mls_private_message", privateMessage: sent.privateMessage });
      const got = await mls.processMessage(decode(bytes), r, mls.emptyPskIndex, mls.acceptAll, cs);
      r = got.newState;
      if (got.kind !== "applicationMessage" || got.message.length !== size) {
        throw new Error("application message did not round-trip");
      }
    }
    const elapsed = (performance.now() - start) / 1000;
    handles.set(sender, s);
    handles.set(receiver, r);
    return { elapsed };
  },

  async state_size({ group }) {
    return { bytes: mls.encodeGroupState(get(group)).length };
  },

  async free({ handle }) {
    handles.delete(handle);
    return {};
  },
};

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: null, ok: false, error: `bad JSON: ${e.message}` }) + "\n");
    continue;
  }
  const { id = null, cmd, ...args } = request;
  if (cmd === "shutdown") {
    process.stdout.write(JSON.stringify({ id, ok: true }) + "\n");
    process.exit(0);
  }
  try {
    const fn = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
    if (fn === undefined) throw new Error(`unknown command ${cmd}`);
    process.stdout.write(JSON.stringify({ id, ok: true, ...(await fn(args)) }) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ id, ok: false, error: `${e?.name}: ${e?.message}` }) + "\n");
  }
}
