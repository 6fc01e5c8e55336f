-- wrk script of bench/store.sh (issue #5): GET /tables/bench/docs/<id>, the id picked at random
-- from IDS_FILE (one existing id a line) for every request.
local ids = {}
local f = assert(io.open(assert(os.getenv("IDS_FILE"), "IDS_FILE is not set"), "r"))
for line in f:lines() do if #line > 0 then ids[#ids + 1] = line end end
f:close()
assert(#ids > 0, "no ids in IDS_FILE")
math.randomseed(os.time())
local n = #ids
request = function()
  return wrk.format("GET", "/tables/bench/docs/" .. ids[math.random(n)])
end
