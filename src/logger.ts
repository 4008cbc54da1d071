import { type DestinationStream, type Logger, pino } from 'pino'

/**
 * Structured JSON logs. Anything that could carry a credential is censored by path, as a net
 * under the rule that handlers never log secrets in the first place.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'mcp-oauth-proxy' },
      redact: {
        paths: [
          'authorization',
          '*.authorization',
          'headers.authorization',
          'headers.cookie',
          '*.client_secret',
          'client_secret',
          '*.access_token',
          '*.refresh_token',
          '*.code',
          '*.code_verifier',
          'token',
          '*.token',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  )
}
