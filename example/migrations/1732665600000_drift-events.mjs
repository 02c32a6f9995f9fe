export function up (pgm) {
  pgm.createTable('um_demo_drift_events', {
    id: 'id',
    payer_id: { type: 'integer', notNull: true, references: 'um_demo_payers', onDelete: 'CASCADE' },
    denial_rate_delta: { type: 'numeric(6,4)', notNull: true },
    detected_at: { type: 'timestamptz', notNull: true, default: pgm.func('now()') }
  })
}

export function down (pgm) {
  pgm.dropTable('um_demo_drift_events')
}
