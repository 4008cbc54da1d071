import { sha256 } from '../crypto.js'
import { storeKey } from '../store/keys.js'

/** The upstream leg of a sign-in, found by the `state` it sent to the upstream. */
export const transactionKey = (state: string) => storeKey.transaction(sha256(state))

/**
 * The upstream leg of an `/account` sign-in: no MCP client behind it, so `/callback` opens an
 * account session instead of issuing a code. Transactions without `kind` are MCP authorizations.
 */
export interface AccountTransaction {
  readonly kind: 'account'
  readonly nonce: string
  readonly codeVerifier: string
  /** SHA-256 of the browser binding cookie of the browser that started the sign-in. */
  readonly browser: string
  readonly flowId: string
}

export function isAccountTransaction(transaction: object): transaction is AccountTransaction {
  return (transaction as { kind?: unknown }).kind === 'account'
}
