// Node 20's global WebCrypto key type; @types/node declares it only under `webcrypto`.
type CryptoKey = import('node:crypto').webcrypto.CryptoKey
