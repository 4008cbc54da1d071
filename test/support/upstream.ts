export * from '../../demo/idp.js'
