// A real, independent SCIM 2.0 service provider for tests: SCIMMY (resource and
// message handling, RFC 7643/7644) behind scimmy-routers (the HTTP protocol) on
// express, with an in-memory store the test fills through the protocol itself
// (POST /Users, POST /Groups). Bearer token = $SCIM_TOKEN. Listens on 127.0.0.1,
// port $PORT (0: any; the chosen port is printed), and exits when stdin closes so
// it never outlives the test that started it. NOT for production.
import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";
import { randomUUID } from "node:crypto";

const TOKEN = process.env.SCIM_TOKEN;
if (!TOKEN) throw new Error("SCIM_TOKEN must be set");

// One store per resource type: id -> resource as last written.
function store(Resource) {
  const items = new Map();
  SCIMMY.Resources.declare(Resource)
    .ingress((resource, data) => {
      const id = resource.id ?? randomUUID();
      if (resource.id && !items.has(id)) throw new SCIMMY.Types.Error(404, null, `Resource ${id} not found`);
      const now = new Date().toISOString();
      const created = items.get(id)?.meta?.created ?? now;
      const item = { ...data, id, meta: { created, lastModified: now } };
      items.set(id, item);
      return item;
    })
    .egress((resource) => {
      if (resource.id) {
        const item = items.get(resource.id);
        if (!item) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
        return item;
      }
      const all = [...items.values()];
      return resource.filter ? resource.filter.match(all) : all;
    })
    .degress((resource) => {
      if (!items.delete(resource.id)) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    });
}
store(SCIMMY.Resources.User);
store(SCIMMY.Resources.Group);

const app = express();
app.use("/scim/v2", new SCIMMYRouters({
  type: "bearer",
  docUri: "https://example.com/scim-test-server",
  handler: (request) => {
    if (request.header("Authorization") !== `Bearer ${TOKEN}`) throw new Error("Authorization not detected!");
    return "zt-test";
  },
}));
const server = app.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`scim listening on ${server.address().port}`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
