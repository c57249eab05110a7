/**
 * The runners' transport when the cluster has a secret (`ClusterSupervisor.Options.secret`): TLS 1.3 with a
 * pre-shared key derived from it, so that only processes that know the secret can open a connection to a
 * runner or accept one from it (both ends prove the key in the handshake; no certificates), and what they
 * say is encrypted.
 *
 * Why our own: `effect` ships the cluster's plain-TCP pieces (`NodeClusterSocket.layerSocketServer` and
 * `layerClientProtocol`) and TLS sockets (`NodeSocketServer.layerTls`, `NodeSocket.makeTls`), but no TLS
 * variant of the two cluster layers. These are those two layers over TLS, with the same timeouts and
 * serialization; nothing else of the cluster is replaced.
 *
 * A key is HKDF-SHA256 of a secret, salted with this module's label and bound to the cluster's table prefix
 * (two clusters sharing a secret by mistake still cannot talk to each other). A process connects with the key
 * of its `secret` and accepts those of `secret` and `acceptedSecrets` (a rotation in progress): the PSK
 * identity, sent in clear, names the prefix and a fingerprint of the key (a hash of it, which reveals nothing
 * of it), so that the server knows which key the client proves.
 *
 * @internal
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Runners from "effect/cluster/Runners"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import { Socket } from "effect/socket/Socket"
import * as Crypto from "node:crypto"
import type * as Tls from "node:tls"

/** The shortest secret accepted: 32 characters, as `openssl rand -base64 32` gives 44. */
export const minimumSecretLength = 32

/** A cluster's pre-shared key and the identity its runners present it under. */
export interface PreSharedKey {
  readonly identity: string
  readonly key: Buffer
}

/** The key the runners of the cluster whose tables are `prefix`-ed derive from `secret`. */
export const derive = (secret: Redacted.Redacted<string>, prefix: string): PreSharedKey => {
  const key = Buffer.from(Crypto.hkdfSync("sha256", Redacted.value(secret), "effect-bgworker runners", prefix, 32))
  const fingerprint = Crypto.createHash("sha256").update(key).digest("hex").slice(0, 16)
  return { identity: `effect-bgworker cluster ${prefix} ${fingerprint}`, key }
}

/** The keys of one process: the one it connects with, and every one it accepts (that one among them). */
export interface Keys {
  readonly connect: PreSharedKey
  readonly accept: ReadonlyArray<PreSharedKey>
}

/** The keys of a process given `secret` and `acceptedSecrets`, for the cluster whose tables are `prefix`-ed. */
export const keys = (
  secret: Redacted.Redacted<string>,
  acceptedSecrets: ReadonlyArray<Redacted.Redacted<string>>,
  prefix: string
): Keys => {
  const connect = derive(secret, prefix)
  return { connect, accept: [connect, ...acceptedSecrets.map((accepted) => derive(accepted, prefix))] }
}

/** TLS 1.3 only: its PSK handshake authenticates both ends (TLS 1.2's PSK suites do not all do so well). */
const minVersion = "TLSv1.3"

/** The server's side: a client presenting an identity not accepted, or not proving its key, fails the handshake. */
export const serverOptions = (accept: ReadonlyArray<PreSharedKey>): Tls.TlsOptions => {
  const byIdentity = new Map(accept.map((psk) => [psk.identity, psk.key]))
  return { minVersion, pskCallback: (_socket, identity) => byIdentity.get(identity) ?? null }
}

/**
 * The client's side: the server must prove the key. A TLS 1.3 server may answer the key with a certificate
 * handshake instead, which Node would accept from any certificate its CAs trust; a runner never shows one, so
 * a server that does is refused (`checkServerIdentity` is called for certificate handshakes only).
 */
export const clientOptions = (psk: PreSharedKey): Tls.ConnectionOptions => ({
  minVersion,
  pskCallback: () => ({ psk: psk.key, identity: psk.identity }),
  checkServerIdentity: () =>
    new Error("the server showed a certificate instead of proving the cluster's key: it is not one of its runners")
})

/** `NodeClusterSocket.layerSocketServer` over TLS: listens on the listen address, else the runner's. */
export const layerSocketServer = (accept: ReadonlyArray<PreSharedKey>) =>
  Layer.unwrap(Effect.gen(function*() {
    const config = yield* ShardingConfig.ShardingConfig
    const address = Option.orElse(config.runnerListenAddress, () => config.runnerAddress)
    if (Option.isNone(address)) return yield* Effect.die("runnerTransport: the cluster has no runner address")
    return NodeSocketServer.layerTls({ host: address.value.host, port: address.value.port, ...serverOptions(accept) })
  }))

/** `NodeClusterSocket.layerClientProtocol` over TLS (the same open and idle timeouts). */
export const layerClientProtocol = (psk: PreSharedKey) =>
  Layer.effect(Runners.RpcClientProtocol)(Effect.gen(function*() {
    const serialization = yield* RpcSerialization.RpcSerialization
    return Runners.RpcClientProtocol.of({
      codecFor: serialization.codecFor,
      make: (address) =>
        Effect.orDie(Effect.flatMap(
          NodeSocket.makeTls({
            openTimeout: 1000,
            timeout: 5500,
            host: address.host,
            port: address.port,
            ...clientOptions(psk)
          }),
          (socket) =>
            RpcClient.makeProtocolSocket().pipe(
              Effect.provideService(Socket, socket),
              Effect.provideService(RpcSerialization.RpcSerialization, serialization)
            )
        ))
    })
  }))
