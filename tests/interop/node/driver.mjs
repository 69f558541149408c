// JSON-lines driver around ts-mls (the TypeScript RFC 9420 implementation) for the
// mls-bridge interop tests.  It only *calls* ts-mls's public API.
//
// Protocol: one JSON object per line on stdin, one JSON object per line on stdout, in
// order.  Request: {"id": any, "cmd": "<name>", ...args}.  Response: {"id": same,
// "ok": true, ...result} or {"id": same, "ok": false, "error": "...", "stack": "..."}.
// All byte strings are lowercase hex; epochs and leaf indices are JSON numbers.
// Handles are opaque strings naming state held in this process (key packages with
// their private keys, group states).
//
// Commands (see tests/interop/peer.py for the typed Python side):
//   info                                   -> {ts_mls_version, suites}
//   generate_key_package {suite, identity, signature_keys?} -> {handle, key_package}
//   create_group {suite, identity, group_id, key_package_handle?, signature_keys?}
//                                          -> {handle, epoch}
//   commit {handle, adds?, removes?, group_context_extensions?: [[type, data]], public?,
//           ratchet_tree_extension?, merge?}                        -> {commit, welcome, group_info, ratchet_tree,
//                                              epoch, has_path}
//   add {handle, key_packages}             (commit with only Add proposals)
//   remove {handle, leaf_indices}          (commit with only Remove proposals)
//   update {handle}                        (empty commit: full path, RFC 9420 §12.4)
//   propose {handle, add?|remove?, public?}-> {message}
//   merge_pending {handle} / discard_pending {handle}
//   join {key_package_handle, welcome, ratchet_tree?} -> {handle, epoch}
//   process {handle, message}              -> {kind, epoch, plaintext?, active}
//   decrypt {handle, message}              (process; error unless application)
//   encrypt {handle, plaintext, authenticated_data?} -> {message}
//   epoch_authenticator {handle}           -> {epoch_authenticator, epoch}
//   export {handle, label, context, length}-> {secret}
//   group_info {handle, ratchet_tree_extension?, external_pub?} -> {group_info, ratchet_tree}
//       external_pub: "rfc" (default, RFC 9420 §12.4.3.2 encoding) or "native" (ts-mls's
//       bare key).  joinGroupExternal in ts-mls 1.6.4 reads only the native form.
//   external_join {suite, identity, group_info, ratchet_tree?, signature_keys?}
//                                          -> {handle, commit, epoch}
// signature_keys: "uncompressed" (default; RFC 9420 §5.1.1 encoding of ECDSA keys) or
// "native" (ts-mls's own keygen, which emits compressed ECDSA points).
//   reinit {handle, group_id, suite}       -> {commit, epoch}
//   reinit_new_group {handle, key_packages, suite?, identity} -> {handle, commit,
//                                              welcome, ratchet_tree, epoch}
//   join_reinit {handle, key_package_handle, welcome, ratchet_tree?} -> {handle, epoch}
//   state {handle}                         -> {epoch, group_id, suite, own_leaf_index,
//                                              group_context, ratchet_tree, members, ...}
//   free {handle}                          -> {}
//   shutdown                               -> {} and exit 0

import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import * as mls from "ts-mls";
import { encodeRatchetTree, decodeRatchetTree } from "ts-mls/ratchetTree.js";
import { encodeGroupContext } from "ts-mls/groupContext.js";
import { createGroupInfo } from "ts-mls/createCommit.js";

const TS_MLS_VERSION = JSON.parse(
  readFileSync(new URL("./node_modules/ts-mls/package.json", import.meta.url), "utf8"),
).version;

// ---------------------------------------------------------------- helpers

const toHex = (bytes) => Buffer.from(bytes).toString("hex");

function fromHex(value, name) {
  if (typeof value !== "string" || !/^([0-9a-fA-F]{2})*$/.test(value)) {
    throw new Error(`argument ${name} must be a hex string`);
  }
  return new Uint8Array(Buffer.from(value, "hex"));
}

function need(args, name) {
  if (!(name in args)) throw new Error(`missing argument ${name}`);
  return args[name];
}

const suiteImpls = new Map();

function suiteName(id) {
  const name = Object.keys(mls.ciphersuites).find((k) => mls.ciphersuites[k] === id);
  if (name === undefined) throw new Error(`unknown cipher suite ${id}`);
  return name;
}

async function impl(id) {
  if (!suiteImpls.has(id)) {
    suiteImpls.set(id, await mls.getCiphersuiteImpl(mls.getCiphersuiteFromName(suiteName(id))));
  }
  return suiteImpls.get(id);
}

const handles = new Map();
let nextHandle = 1;

function store(kind, value) {
  const handle = `${kind}${nextHandle++}`;
  handles.set(handle, { kind, value });
  return handle;
}

function lookup(handle, kind) {
  const entry = handles.get(handle);
  if (entry === undefined || entry.kind !== kind) {
    throw new Error(`no ${kind} handle ${handle}`);
  }
  return entry.value;
}

function decodeMessage(hex, wireformat, name) {
  const bytes = fromHex(hex, name);
  const decoded = mls.decodeMlsMessage(bytes, 0);
  if (decoded === undefined) throw new Error(`${name}: ts-mls cannot decode this MLSMessage`);
  const [message, end] = decoded;
  if (end !== bytes.length) throw new Error(`${name}: ${bytes.length - end} trailing bytes`);
  if (wireformat !== undefined && message.wireformat !== wireformat) {
    throw new Error(`${name}: expected ${wireformat}, got ${message.wireformat}`);
  }
  return message;
}

function decodeTree(hex) {
  if (hex === undefined || hex === null) return undefined;
  const bytes = fromHex(hex, "ratchet_tree");
  const decoded = decodeRatchetTree(bytes, 0);
  if (decoded === undefined || decoded[1] !== bytes.length) {
    throw new Error("ratchet_tree: ts-mls cannot decode it");
  }
  return decoded[0];
}

const encodeMessage = (content) => toHex(mls.encodeMlsMessage({ version: "mls10", ...content }));
const credentialOf = (identityHex) => ({
  credentialType: "basic",
  identity: fromHex(identityHex, "identity"),
});

// Group handles hold {state, suite, pending}; state objects are immutable in ts-mls.
function group(args) {
  return lookup(need(args, "handle"), "group");
}

// QUIC-style variable-length integer (RFC 9420 §2.1.2), for opaque<V> prefixes.
function varintPrefixed(bytes) {
  const n = bytes.length;
  let head;
  if (n < 0x40) head = [n];
  else if (n < 0x4000) head = [0x40 | (n >> 8), n & 0xff];
  else throw new Error("value too long for this helper");
  return new Uint8Array([...head, ...bytes]);
}

// ts-mls 1.6.4 writes (and reads) the external_pub extension as the bare HPKE public
// key; RFC 9420 §12.4.3.2 defines its data as struct { HPKEPublicKey external_pub; },
// i.e. opaque<V> with a varint length prefix.  external_pub: "rfc" (default) signs a
// GroupInfo with the RFC encoding through ts-mls's createGroupInfo; "native" uses
// ts-mls's createGroupInfoWithExternalPub(AndRatchetTree) unchanged.
async function groupInfoOf(g, withTree, externalPub = "rfc") {
  const cs = await impl(g.suite);
  let info;
  if (externalPub === "native") {
    info = withTree
      ? await mls.createGroupInfoWithExternalPubAndRatchetTree(g.state, [], cs)
      : await mls.createGroupInfoWithExternalPub(g.state, [], cs);
  } else if (externalPub === "rfc") {
    const keyPair = await cs.hpke.deriveKeyPair(g.state.keySchedule.externalSecret);
    const publicKey = await cs.hpke.exportPublicKey(keyPair.publicKey);
    const extensions = [{ extensionType: "external_pub", extensionData: varintPrefixed(publicKey) }];
    if (withTree) {
      extensions.push({ extensionType: "ratchet_tree", extensionData: encodeRatchetTree(g.state.ratchetTree) });
    }
    info = await createGroupInfo(g.state.groupContext, g.state.confirmationTag, g.state, extensions, cs);
  } else {
    throw new Error(`bad external_pub ${externalPub}`);
  }
  return encodeMessage({ wireformat: "mls_group_info", groupInfo: info });
}

// ts-mls 1.6.4 draws ECDSA signature keys with @noble/curves' getPublicKey(), which
// returns a *compressed* SEC1 point; RFC 9420 §5.1.1 requires the uncompressed
// representation.  By default the driver therefore makes the signature key pair itself
// (same curve library, uncompressed public key) and hands it to
// generateKeyPackageWithKey; signature_keys: "native" keeps ts-mls's own keys.
const ECDSA_CURVES = { 2: "p256", 5: "p521", 7: "p384" };

async function signatureKeyPair(suite, cs) {
  const curveName = ECDSA_CURVES[suite];
  if (curveName === undefined) return cs.signature.keygen();
  const curves = await import("@noble/curves/nist.js");
  const curve = curves[curveName];
  const signKey = curve.utils.randomSecretKey();
  return { signKey, publicKey: curve.getPublicKey(signKey, false) };
}

async function newKeyPackage(suite, identityHex, signatureKeys = "uncompressed") {
  const cs = await impl(suite);
  const credential = credentialOf(identityHex);
  if (signatureKeys === "native") {
    return mls.generateKeyPackage(
      credential, mls.defaultCapabilities(), mls.defaultLifetime, [], cs);
  }
  if (signatureKeys !== "uncompressed") throw new Error(`bad signature_keys ${signatureKeys}`);
  return mls.generateKeyPackageWithKey(
    credential, mls.defaultCapabilities(), mls.defaultLifetime, [],
    await signatureKeyPair(suite, cs), cs);
}

// ---------------------------------------------------------------- commands

async function commitWith(args, extraProposals) {
  const g = group(args);
  const cs = await impl(g.suite);
  const result = await mls.createCommit(
    { state: g.state, cipherSuite: cs, pskIndex: mls.makePskIndex(g.state, {}) },
    {
      wireAsPublicMessage: args.public ?? true,
      extraProposals,
      ratchetTreeExtension: args.ratchet_tree_extension ?? false,
    },
  );
  const merge = args.merge ?? true;
  if (merge) g.state = result.newState;
  else g.pending = result.newState;
  const ready = { state: result.newState, suite: g.suite };
  const body = result.commit.publicMessage?.content?.commit;
  return {
    commit: toHex(mls.encodeMlsMessage(result.commit)),
    welcome: result.welcome === undefined
      ? null
      : encodeMessage({ wireformat: "mls_welcome", welcome: result.welcome }),
    group_info: await groupInfoOf(ready, false),
    ratchet_tree: toHex(encodeRatchetTree(result.newState.ratchetTree)),
    epoch: Number(result.newState.groupContext.epoch),
    has_path: body === undefined ? null : body.path !== undefined,
  };
}

function proposalsFrom(args) {
  const proposals = [];
  for (const kpHex of args.adds ?? []) {
    const kp = decodeMessage(kpHex, "mls_key_package", "adds[]").keyPackage;
    proposals.push({ proposalType: "add", add: { keyPackage: kp } });
  }
  for (const removed of args.removes ?? []) {
    proposals.push({ proposalType: "remove", remove: { removed } });
  }
  if (args.group_context_extensions !== undefined) {
    const extensions = args.group_context_extensions.map(([extensionType, data]) => ({
      extensionType, extensionData: fromHex(data, "group_context_extensions[]"),
    }));
    proposals.push({ proposalType: "group_context_extensions", groupContextExtensions: { extensions } });
  }
  return proposals;
}

function stateSummary(g) {
  const s = g.state;
  const gc = s.groupContext;
  return {
    epoch: Number(gc.epoch),
    group_id: toHex(gc.groupId),
    suite: g.suite,
    own_leaf_index: s.privatePath.leafIndex,
    group_context: toHex(encodeGroupContext(gc)),
    tree_hash: toHex(gc.treeHash),
    confirmed_transcript_hash: toHex(gc.confirmedTranscriptHash),
    confirmation_tag: toHex(s.confirmationTag),
    ratchet_tree: toHex(encodeRatchetTree(s.ratchetTree)),
    members: s.ratchetTree
      .map((node, i) => (node?.nodeType === "leaf" ? [i / 2, node.leaf] : null))
      .filter((x) => x !== null)
      .map(([leafIndex, leaf]) => ({
        leaf_index: leafIndex,
        identity: leaf.credential.credentialType === "basic" ? toHex(leaf.credential.identity) : null,
        signature_key: toHex(leaf.signaturePublicKey),
      })),
    active: s.groupActiveState.kind,
    has_pending: g.pending !== undefined,
  };
}

const commands = {
  async info() {
    return { ts_mls_version: TS_MLS_VERSION, suites: Object.values(mls.ciphersuites) };
  },

  async generate_key_package(args) {
    const suite = need(args, "suite");
    const kp = await newKeyPackage(suite, need(args, "identity"), args.signature_keys);
    const handle = store("kp", { ...kp, suite });
    return {
      handle,
      key_package: encodeMessage({ wireformat: "mls_key_package", keyPackage: kp.publicPackage }),
    };
  },

  async create_group(args) {
    const suite = need(args, "suite");
    const kp = args.key_package_handle !== undefined
      ? lookup(args.key_package_handle, "kp")
      : await newKeyPackage(suite, need(args, "identity"), args.signature_keys);
    const state = await mls.createGroup(
      fromHex(need(args, "group_id"), "group_id"), kp.publicPackage, kp.privatePackage, [],
      await impl(suite));
    return { handle: store("group", { state, suite }), epoch: Number(state.groupContext.epoch) };
  },

  async commit(args) {
    return commitWith(args, proposalsFrom(args));
  },

  async add(args) {
    return commitWith(args, proposalsFrom({ adds: need(args, "key_packages") }));
  },

  async remove(args) {
    return commitWith(args, proposalsFrom({ removes: need(args, "leaf_indices") }));
  },

  async update(args) {
    return commitWith(args, []);
  },

  async propose(args) {
    const g = group(args);
    const proposals = proposalsFrom(args);
    if (proposals.length !== 1) throw new Error("propose takes exactly one of adds/removes");
    const result = await mls.createProposal(
      g.state, args.public ?? true, proposals[0], await impl(g.suite));
    g.state = result.newState;
    return { message: toHex(mls.encodeMlsMessage(result.message)) };
  },

  async merge_pending(args) {
    const g = group(args);
    if (g.pending === undefined) throw new Error("no pending commit");
    g.state = g.pending;
    g.pending = undefined;
    return { epoch: Number(g.state.groupContext.epoch) };
  },

  async discard_pending(args) {
    group(args).pending = undefined;
    return {};
  },

  async join(args) {
    const kp = lookup(need(args, "key_package_handle"), "kp");
    const welcome = decodeMessage(need(args, "welcome"), "mls_welcome", "welcome").welcome;
    const state = await mls.joinGroup(
      welcome, kp.publicPackage, kp.privatePackage, mls.emptyPskIndex, await impl(kp.suite),
      decodeTree(args.ratchet_tree));
    return {
      handle: store("group", { state, suite: kp.suite }),
      epoch: Number(state.groupContext.epoch),
    };
  },

  async process(args) {
    const g = group(args);
    const message = decodeMessage(need(args, "message"), undefined, "message");
    if (message.wireformat !== "mls_public_message" && message.wireformat !== "mls_private_message") {
      throw new Error(`process takes a PublicMessage or PrivateMessage, got ${message.wireformat}`);
    }
    const contentType = message.wireformat === "mls_public_message"
      ? message.publicMessage.content.contentType
      : message.privateMessage.contentType;
    const result = await mls.processMessage(
      message, g.state, mls.makePskIndex(g.state, {}), mls.acceptAll, await impl(g.suite));
    g.state = result.newState;
    const out = {
      kind: contentType,
      epoch: Number(g.state.groupContext.epoch),
      active: g.state.groupActiveState.kind,
    };
    if (result.kind === "applicationMessage") out.plaintext = toHex(result.message);
    return out;
  },

  async decrypt(args) {
    const out = await commands.process(args);
    if (out.plaintext === undefined) throw new Error(`expected an application message, got ${out.kind}`);
    return out;
  },

  async encrypt(args) {
    const g = group(args);
    const result = await mls.createApplicationMessage(
      g.state, fromHex(need(args, "plaintext"), "plaintext"), await impl(g.suite),
      fromHex(args.authenticated_data ?? "", "authenticated_data"));
    g.state = result.newState;
    return {
      message: encodeMessage({ wireformat: "mls_private_message", privateMessage: result.privateMessage }),
    };
  },

  async epoch_authenticator(args) {
    const g = group(args);
    return {
      epoch_authenticator: toHex(g.state.keySchedule.epochAuthenticator),
      epoch: Number(g.state.groupContext.epoch),
    };
  },

  async export(args) {
    const g = group(args);
    const label = new TextDecoder("utf-8", { fatal: true }).decode(fromHex(need(args, "label"), "label"));
    const secret = await mls.mlsExporter(
      g.state.keySchedule.exporterSecret, label, fromHex(need(args, "context"), "context"),
      need(args, "length"), await impl(g.suite));
    return { secret: toHex(secret) };
  },

  async group_info(args) {
    const g = group(args);
    return {
      group_info: await groupInfoOf(g, args.ratchet_tree_extension ?? false, args.external_pub),
      ratchet_tree: toHex(encodeRatchetTree(g.state.ratchetTree)),
    };
  },

  async external_join(args) {
    const suite = need(args, "suite");
    const cs = await impl(suite);
    const info = decodeMessage(need(args, "group_info"), "mls_group_info", "group_info").groupInfo;
    const kp = await newKeyPackage(suite, need(args, "identity"), args.signature_keys);
    const result = await mls.joinGroupExternal(
      info, kp.publicPackage, kp.privatePackage, false, cs, decodeTree(args.ratchet_tree));
    return {
      handle: store("group", { state: result.newState, suite }),
      commit: encodeMessage({ wireformat: "mls_public_message", publicMessage: result.publicMessage }),
      epoch: Number(result.newState.groupContext.epoch),
    };
  },

  async reinit(args) {
    const g = group(args);
    const suite = args.suite ?? g.suite;
    const result = await mls.reinitGroup(
      g.state, fromHex(need(args, "group_id"), "group_id"), "mls10", suiteName(suite), [],
      await impl(g.suite));
    g.state = result.newState;
    return {
      commit: toHex(mls.encodeMlsMessage(result.commit)),
      epoch: Number(g.state.groupContext.epoch),
      active: g.state.groupActiveState.kind,
    };
  },

  async reinit_new_group(args) {
    const g = group(args);
    const pending = g.state.groupActiveState;
    if (pending.kind !== "suspendedPendingReinit") throw new Error("group is not suspended for reinit");
    const suite = mls.ciphersuites[pending.reinit.cipherSuite];
    const kp = await newKeyPackage(suite, need(args, "identity"));
    const members = need(args, "key_packages").map(
      (hex) => decodeMessage(hex, "mls_key_package", "key_packages[]").keyPackage);
    const result = await mls.reinitCreateNewGroup(
      g.state, kp.publicPackage, kp.privatePackage, members, pending.reinit.groupId,
      pending.reinit.cipherSuite, pending.reinit.extensions);
    return {
      handle: store("group", { state: result.newState, suite }),
      commit: toHex(mls.encodeMlsMessage(result.commit)),
      welcome: encodeMessage({ wireformat: "mls_welcome", welcome: result.welcome }),
      ratchet_tree: toHex(encodeRatchetTree(result.newState.ratchetTree)),
      epoch: Number(result.newState.groupContext.epoch),
    };
  },

  async join_reinit(args) {
    const g = group(args);
    const kp = lookup(need(args, "key_package_handle"), "kp");
    const welcome = decodeMessage(need(args, "welcome"), "mls_welcome", "welcome").welcome;
    const state = await mls.joinGroupFromReinit(
      g.state, welcome, kp.publicPackage, kp.privatePackage, decodeTree(args.ratchet_tree));
    return {
      handle: store("group", { state, suite: kp.suite }),
      epoch: Number(state.groupContext.epoch),
    };
  },

  async state(args) {
    return stateSummary(group(args));
  },

  async free(args) {
    handles.delete(need(args, "handle"));
    return {};
  },
};

// ---------------------------------------------------------------- main loop

function respond(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    respond({ id: null, ok: false, error: `bad JSON request: ${e.message}` });
    return;
  }
  const { id = null, cmd, ...args } = request;
  if (cmd === "shutdown") {
    respond({ id, ok: true });
    process.exit(0);
  }
  const fn = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
  if (fn === undefined) {
    respond({ id, ok: false, error: `unknown command ${JSON.stringify(cmd)}` });
    return;
  }
  try {
    respond({ id, ok: true, ...(await fn(args)) });
  } catch (e) {
    const name = e?.constructor?.name ?? "Error";
    respond({ id, ok: false, error: `${name}: ${e?.message ?? String(e)}`, stack: e?.stack ?? "" });
  }
}

// Requests are handled strictly one after another, in arrival order.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  if (line.trim() === "") return;
  queue = queue.then(() => handle(line));
});
lines.on("close", () => {
  queue.then(() => process.exit(0));
});
