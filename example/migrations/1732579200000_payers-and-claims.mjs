// Tables carry the um_demo_ prefix so the demo can share a database with other apps (and tests).
export function up (pgm) {
  pgm.createTable('um_demo_payers', {
    id: 'id',
    name: { type: 'text', notNull: true, unique: true },
    region: { type: 'text', notNull: true }
  })
  pgm.createTable('um_demo_claims', {
    id: 'id',
    payer_id: { type: 'integer', notNull: true, references: 'um_demo_payers', onDelete: 'CASCADE' },
    external_ref: { type: 'text', notNull: true, unique: true },
    amount_cents: { type: 'integer', notNull: true, check: 'amount_cents >= 0' },
    status: { type: 'text', notNull: true, default: 'received' },
    created_at: { type: 'timestamptz', notNull: true, default: pgm.func('now()') }
  })
  pgm.createIndex('um_demo_claims', ['payer_id', 'status'])
  pgm.sql(`INSERT INTO um_demo_payers (name, region) VALUES
    ('Northwind Health', 'east'), ('Blue Harbor', 'west'), ('Summit Care', 'central'),
    ('Lakeside Mutual', 'east'), ('Redwood Plans', 'west')`)
}

export function down (pgm) {
  pgm.dropTable('um_demo_claims')
  pgm.dropTable('um_demo_payers')
}
