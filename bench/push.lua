-- wrk script for gpuhook's benchmarks (bench/run.sh drives it).
--
--   wrk -s bench/push.lua URL -- push BODY_FILE SIGNATURE_HEX NONCE
--   wrk -s bench/push.lua URL -- bad  BODY_FILE SIGNATURE_HEX NONCE
--   wrk -s bench/push.lua URL -- get
--
-- push: POST a signed GitHub push delivery. The body is read once from
--       BODY_FILE and its signature is precomputed, since the body never
--       changes; only X-GitHub-Delivery does: NONCE-<thread>-<counter>, fresh
--       for every request as GitHub's are, so no receiver can answer from a
--       cache of deliveries it has seen.
-- bad:  the same, with a well-formed but wrong signature (the last hex digit
--       flipped), so the receiver has to read and hash the whole body and then
--       refuse it.
-- get:  GET the URL's path (probes such as /healthz and /gpu).
--
-- Each request is one string concatenation: the fixed head and the body are
-- built once in init(), so wrk spends as little as possible of the CPU it
-- shares with the server.

local threads_started = 0

function setup(thread)
   threads_started = threads_started + 1
   thread:set("thread_id", threads_started)
end

local mode, head, tail, nonce, probe
local counter = 0

local function flip_last_hex(sig)
   local last = sig:sub(-1)
   local swapped = last == "0" and "1" or "0"
   return sig:sub(1, -2) .. swapped
end

function init(args)
   mode = args[1] or "get"
   if mode == "get" then
      probe = wrk.format("GET", wrk.path)
      return
   end
   local body_file, sig = args[2], args[3]
   nonce = (args[4] or "bench") .. "-" .. tostring(thread_id or 0)
   local f = assert(io.open(body_file, "rb"))
   local body = f:read("*a")
   f:close()
   if mode == "bad" then
      sig = flip_last_hex(sig)
   end
   head = "POST " .. wrk.path .. " HTTP/1.1\r\n"
      .. "Host: " .. wrk.host .. "\r\n"
      .. "User-Agent: GitHub-Hookshot/bench\r\n"
      .. "Content-Type: application/json\r\n"
      .. "X-GitHub-Event: push\r\n"
      .. "X-GitHub-Hook-ID: 123456789\r\n"
      .. "X-Hub-Signature-256: sha256=" .. sig .. "\r\n"
      .. "X-GitHub-Delivery: "
   tail = "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function request()
   if probe then
      return probe
   end
   counter = counter + 1
   return head .. nonce .. "-" .. counter .. tail
end
