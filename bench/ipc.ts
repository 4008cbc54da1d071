/**
 * The messages between the orchestrator (`run.ts`) and a server under test (`server.ts`),
 * exchanged over the child's IPC channel so the server's HTTP surface stays exactly the
 * proxy's: nothing is added to it for the benchmark.
 */

/** What a child serves, passed in `BENCH_SERVER` as JSON. */
export type ServerSpec =
  | {
      readonly kind: 'bare'
      /** The JSON-RPC response `POST /mcp` answers, whatever it is sent. */
      readonly response: unknown
    }
  | {
      /** The oidc-provider test upstream (looking like Kinde), which also signs users in. */
      readonly kind: 'upstream'
      /** The proxies it will be the upstream of, for their callback URLs. */
      readonly proxyUrls: readonly string[]
    }
  | {
      readonly kind: 'proxy'
      readonly port: number
      readonly sessions: 'stateful' | 'stateless'
      readonly redisUrl: string
      /** The store's variables when not the single node at `redisUrl` (Sentinel, Cluster). */
      readonly redisEnv?: Readonly<Record<string, string>>
      readonly keyPrefix: string
      /** The variables pointing the proxy at the upstream, from the upstream's `Ready`. */
      readonly upstreamEnv: Readonly<Record<string, string>>
    }

/** The child's first message: where it listens. */
export interface Ready {
  readonly type: 'ready'
  readonly url: string
  /** An upstream's: the environment a proxy needs to use it. */
  readonly upstreamEnv?: Readonly<Record<string, string>> | undefined
}

/** Authorization codes minted in the server for `/token` exchanges, one use each. */
export interface MintCodes {
  readonly op: 'mint-codes'
  readonly count: number
  readonly clientId: string
  readonly redirectUri: string
  readonly codeChallenge: string
}

export type Command =
  | MintCodes
  /** At an upstream: the whole flow against a proxy, answering its access token. */
  | { readonly op: 'sign-in'; readonly proxyUrl: string }
  /** At a proxy: an access token bound to the DPoP key with this thumbprint, as /token mints. */
  | { readonly op: 'mint-dpop-token'; readonly jkt: string }
  | { readonly op: 'memory'; readonly gc: boolean }
  | { readonly op: 'profile-start'; readonly intervalMicros: number }
  | { readonly op: 'profile-stop'; readonly path: string }
  | { readonly op: 'close' }

export interface Memory {
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
}

/** The result type of each command. */
export interface CommandResult {
  'mint-codes': string[]
  'sign-in': string
  'mint-dpop-token': string
  memory: Memory
  'profile-start': null
  'profile-stop': null
  close: null
}

export type Request = Command & { readonly id: number }

export type Reply =
  | { readonly type: 'reply'; readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly type: 'reply'; readonly id: number; readonly ok: false; readonly error: string }

export type ChildMessage = Ready | Reply
