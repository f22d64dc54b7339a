-- For bench/run: wrk's summary as one JSON line after its own report, and optional pacing.
-- `wrk ... -- MS` makes each connection wait MS milliseconds between its requests.
-- Latencies are in microseconds; requests slower than --timeout are counted as timeouts, not timed.

init = function(args)
  local pause = tonumber(args[1]) or 0
  if pause > 0 then
    delay = function()
      return pause
    end
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'wrk-json {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
