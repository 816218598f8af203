// Minimal Node HTTP service: node:http only, no framework.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

const SERVICE = "web";
const VERSION = "0.1.0";
const DEFAULT_PORT = 3000;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(data),
  });
  res.end(data);
}

export function handle(req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? "/").split("?", 1)[0];
  if (req.method === "GET" && path === "/health") {
    sendJson(res, 200, {
      status: "ok",
      service: SERVICE,
      version: `${SERVICE}/${VERSION}`,
      time: new Date().toISOString(),
    });
    return;
  }
  sendJson(res, 404, { error: "not found" });
}

export function start(port: number = Number(process.env.PORT ?? DEFAULT_PORT)): Server {
  const server = createServer(handle);
  server.listen(port, "0.0.0.0", () => {
    const addr = server.address();
    console.log(`web listening on :${typeof addr === "object" && addr ? addr.port : port}`);
  });
  return server;
}

if (require.main === module) {
  const server = start();
  // As PID 1 in a container SIGTERM has no default action: close explicitly
  // so `docker stop` returns promptly.
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => server.close(() => process.exit(0)));
  }
}
