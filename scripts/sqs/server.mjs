// The local SQS emulator: fauxqs on 127.0.0.1 only (its own start helper listens on every
// interface). Started and stopped by scripts/dev.
import { writeFileSync } from "node:fs";
import { buildApp } from "fauxqs";

const port = Number.parseInt(process.env.SQS_PORT ?? "9324", 10);
const app = buildApp({ logger: false });
await app.listen({ port, host: "127.0.0.1" });
console.log(`fauxqs listening on http://127.0.0.1:${port}`);
if (process.env.SQS_PID_FILE) {
  writeFileSync(process.env.SQS_PID_FILE, `${process.pid}\n`);
}

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    app.close().finally(() => process.exit(0));
  });
}
