-- wrk script of bench/store.sh (issue #5): POST one small JSON document to /tables/bench/docs.
-- The request is static (the store makes the ids), so wrk builds it once. With TARGET=<n> the
-- (single, -t1) thread stops once n creates were answered 201 (a few in flight may still land).
wrk.method = "POST"
wrk.body = os.getenv("DOC") or '{"name":"Ada Lovelace","email":"ada@example.com","age":36,"active":true,"tags":["math","engines"],"score":12.5}'
wrk.headers["Content-Type"] = "application/json"
local target = tonumber(os.getenv("TARGET") or "")
if target then
  local n = 0
  response = function(status, headers, body)
    if status == 201 then n = n + 1 end
    if n >= target then wrk.thread:stop() end
  end
end
