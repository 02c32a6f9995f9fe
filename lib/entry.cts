import api = require('./index')

// require('upstream-metrics') returns the plugin itself, with the named exports on it.
const upstreamMetrics = Object.assign(api.default, api)
export = upstreamMetrics
