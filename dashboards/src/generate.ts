// npm run dashboard: writes dashboards/upstream-dashboard.json from the code.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dashboardJson } from './upstream-dashboard'

const target = join(__dirname, '..', 'upstream-dashboard.json')
writeFileSync(target, dashboardJson())
console.log(`wrote ${target}`)
