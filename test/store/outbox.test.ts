import { createStoreFixture, mqttInput, newJob, publication, type StoreFixture } from './fixtures';

describe('Store outbox and telemetry', () => {
  let fixture: StoreFixture;

  beforeEach(() => {
    fixture = createStoreFixture();
    fixture.store.open();
  });

  afterEach(() => {
    fixture.cleanup();
  });

  test('outbox returns oldest first', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [], [], [publication('t/1', 'first'), publication('t/2', 'second')]);
    store.finishInput(store.findInputByKey('a')!.id, [
      { topic: 't/3', payload: 'third', qos: 0, retain: true, correlationData: 'AQID' },
    ]);

    const rows = store.peekOutbox(10);
    expect(rows.map((row) => row.payload)).toEqual(['first', 'second', 'third']);
    expect(rows[2]).toMatchObject({ topic: 't/3', qos: 0, retain: true, correlationData: 'AQID' });
    expect(rows[0]).toMatchObject({ qos: 1, retain: false, correlationData: null });
    expect(rows[0].id).toBeLessThan(rows[1].id);
    expect(store.peekOutbox(2).map((row) => row.payload)).toEqual(['first', 'second']);
    expect(store.peekOutbox(0)).toEqual([]);
  });

  test('deleteOutbox removes one row', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [], [], [publication('t', 'first'), publication('t', 'second')]);
    const [first] = store.peekOutbox(1);

    store.deleteOutbox(first.id);
    store.deleteOutbox(first.id);

    expect(store.countOutbox()).toBe(1);
    expect(store.peekOutbox(10).map((row) => row.payload)).toEqual(['second']);
  });

  test('replaceOutbox keeps row position', () => {
    const { store } = fixture;
    store.enqueueInput(mqttInput('a'), [], [], [publication('t/1', 'first'), publication('t/2', 'second')]);
    const [first] = store.peekOutbox(1);

    store.replaceOutbox(first.id, { topic: 'errors', payload: 'stand-in', qos: 0, retain: true, correlationData: 'AQID' });

    const rows = store.peekOutbox(10);
    expect(rows.map((row) => row.payload)).toEqual(['stand-in', 'second']);
    expect(rows[0]).toMatchObject({ id: first.id, topic: 'errors', qos: 0, retain: true, correlationData: 'AQID', createdAt: first.createdAt });
  });

  test('jobRecordIndex of stored jobs', () => {
    const { store } = fixture;
    const { jobIds } = store.enqueueInput(mqttInput('a'), [newJob(0, 'MKV'), newJob(4, 'MKW')], [], []);

    expect(jobIds.map((jobId) => store.jobRecordIndex(jobId))).toEqual([0, 4]);
    expect(store.jobRecordIndex(Math.max(...jobIds) + 1)).toBeNull();
  });

  test('trimOutbox keeps the newest rows', () => {
    const { store } = fixture;
    const messages = ['m1', 'm2', 'm3', 'm4', 'm5'].map((payload) => publication('t', payload));
    store.enqueueInput(mqttInput('a'), [], [], messages);

    expect(store.trimOutbox(2)).toBe(3);
    expect(store.peekOutbox(10).map((row) => row.payload)).toEqual(['m4', 'm5']);
    expect(store.trimOutbox(2)).toBe(0);
  });

  test('telemetry prune deletes older rows', () => {
    const { store } = fixture;
    store.insertTelemetry(new Date('2026-01-01T00:00:00.000Z'), '{"n":1}');
    store.insertTelemetry(new Date('2026-01-02T00:00:00.000Z'), '{"n":2}');
    store.insertTelemetry(new Date('2026-01-03T00:00:00.000Z'), '{"n":3}');

    expect(store.pruneTelemetry(new Date('2026-01-02T00:00:00.000Z'))).toBe(1);
    expect(store.pruneTelemetry(new Date('2026-01-02T00:00:00.000Z'))).toBe(0);
    expect(store.pruneTelemetry(new Date('2026-02-01T00:00:00.000Z'))).toBe(2);
  });

  test('telemetry rejects invalid JSON', () => {
    expect(() => fixture.store.insertTelemetry(new Date(), 'not json')).toThrow(/CHECK constraint failed/);
  });

  test('checkpoint runs while open', () => {
    const { store } = fixture;
    store.insertTelemetry(new Date('2026-01-01T00:00:00.000Z'), '{"n":1}');
    expect(() => store.checkpoint()).not.toThrow();
    store.close();
    expect(() => store.checkpoint()).toThrow(/is not open/);
  });
});
