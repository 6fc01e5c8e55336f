-- wrk script of bench/store.sh (issue #5): GET /tables/bench/docs/<id>, the id picked at random
-- from IDS_FILE (one existing id a line) for every request. Every request is formatted once, up
-- front: per request, wrk only draws a random index (as pgbench's `\set id random(…)` does), so
-- the figure is not the cost of building strings in lua.
local reqs = {}
local f = assert(io.open(assert(os.getenv("IDS_FILE"), "IDS_FILE is not set"), "r"))
for line in f:lines() do
  if #line > 0 then reqs[#reqs + 1] = wrk.format("GET", "/tables/bench/docs/" .. line) end
end
f:close()
assert(#reqs > 0, "no ids in IDS_FILE")
math.randomseed(os.time())
local n = #reqs
local random = math.random
request = function()
  return reqs[random(n)]
end
