-- wrk script of bench/async.sh: POST a small body with a unique X-Call-Id (CALL_PREFIX..n) and,
-- when CALLBACK_URL is set, an X-Callback-Url. Without CALL_PREFIX the request is static (the
-- gateway makes the call id) and wrk builds it once.
wrk.method = "POST"
wrk.body = '{"n":1}'
wrk.headers["Content-Type"] = "application/json"
local prefix = os.getenv("CALL_PREFIX")
local cb = os.getenv("CALLBACK_URL")
if prefix then
  local n = 0
  request = function()
    n = n + 1
    local h = { ["Content-Type"] = "application/json", ["X-Call-Id"] = prefix .. n }
    if cb then h["X-Callback-Url"] = cb end
    return wrk.format(nil, nil, h, nil)
  end
end
