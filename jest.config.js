/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  // Integration tests start brokers, worker threads and child processes: run them one at a time
  // so two cores are enough and ports and folders never collide.
  maxWorkers: 1,
  testTimeout: 60000,
};
