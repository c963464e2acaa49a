#!/usr/bin/env bash
# Regenerates the seed corpus of every fuzz target, tests/fuzz/corpus/<target>/,
# from the GitHub fixtures, the shipped YAML and config, and signed requests.
# The seeds are committed; run this again when the fixtures or formats change.
# Needs openssl and python3 (both in scripts/install-deps.sh).
#
# The seeds hold Tekton expressions such as $(body.after) literally, in single quotes.
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/../.."

out=tests/fuzz/corpus
gh=tests/fixtures/github
fx=tests/fixtures/templates
# The secrets the targets use (fuzz_signature.c, fuzz_request.c).
secret="It's a Secret to Everybody"
secret2="a-second-key-for-rotation"

rm -rf "$out"
mkdir -p "$out"/{signature,event,template,config,request,retryafter,kwatch,gpuview,ghsummary}

# seed TARGET NAME: writes stdin to the seed file.
seed() { cat > "$out/$1/$2"; }
hmac() { openssl dgst -sha256 -hmac "$1" -r | cut -d' ' -f1; }
urlencode() { python3 -c 'import sys, urllib.parse; sys.stdout.write(urllib.parse.quote_plus(sys.stdin.buffer.read()))'; }

# ---- signature: "HEADER|BODY" -------------------------------------------------------------
# GitHub's documented example: this secret over "Hello, World!".
printf 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17|Hello, World!' |
    seed signature github-docs-example
for f in push ping; do
    { printf 'sha256=%s|' "$(hmac "$secret" < "$gh/$f.json")"; cat "$gh/$f.json"; } |
        seed signature "$f-signed"
done
{ printf 'sha256=%s|' "$(hmac "$secret2" < "$gh/ping.json")"; cat "$gh/ping.json"; } |
    seed signature ping-second-key
printf 'sha256=%s|' "$(printf '' | hmac "$secret" | tr 'a-f' 'A-F')" | seed signature empty-body-upper-hex
printf 'sha1=0123456789abcdef0123456789abcdef01234567|body' | seed signature sha1-only
printf 'sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg|x' |
    seed signature bad-hex-digit
printf 'sha256=0123456789abcdef' | seed signature short-header

# ---- event: selector byte (event << 2 | content type), then the body ----------------------
# Content types: 0 JSON, 1 form, 2 JSON with a charset, 3 taken from the first line.
# Events: 0 push, 1 pull_request, 2 ping, 3 issue_comment.
ev() { printf '%b' "\\x$(printf '%02x' $(($1 << 2 | $2)))"; }
{ ev 0 0; cat "$gh/push.json"; } | seed event push-json
{ ev 0 2; cat "$gh/push_with-new-branch.json"; } | seed event push-new-branch-charset
{ ev 1 0; cat "$gh/pull_request_opened.json"; } | seed event pull-request-opened-json
{ ev 1 0; cat "$gh/pull_request_labeled.json"; } | seed event pull-request-labeled-json
{ ev 1 2; cat "$gh/pull_request_synchronize.json"; } | seed event pull-request-synchronize
{ ev 2 0; cat "$gh/ping.json"; } | seed event ping-json
{ ev 3 0; cat "$gh/issue_comment_created.json"; } | seed event issue-comment-json
{ ev 0 1; printf 'payload='; urlencode < "$gh/push.json"; } | seed event push-form
{ ev 1 1; printf 'a=1&payload='; urlencode < "$gh/pull_request_opened.json"; printf '&b'; } |
    seed event pull-request-form
{ ev 0 3; printf 'application/json; charset="UTF-8"\n'; cat "$gh/workflow_dispatch.json"; } |
    seed event content-type-line
{ ev 0 3; printf 'application/x-www-form-urlencoded;charset=us-ascii\npayload=%%7B%%7D'; } |
    seed event form-content-type-line
{ ev 0 0; printf '{"ref":"refs/tags/v1","after":"0000000000000000000000000000000000000000",'
  printf '"repository":{"clone_url":"u","full_name":"o/r"},"deleted":true,'
  printf '"commits":[{"added":["a","b"],"modified":["a"],"removed":["c",1]},{"added":["b"]}]}'; } |
    seed event push-deleted-tag
{ ev 1 0; printf '{"action":"labeled","label":{"name":"gpu:original"},"number":12,'
  printf '"pull_request":{"head":{"sha":"abc","ref":"f"},"base":{"ref":"main"},"title":"t",'
  printf '"draft":true,"labels":[{"name":"x"},{},7]},"repository":{"clone_url":"u"}}'; } |
    seed event pull-request-minimal
{ ev 0 0; printf '{"a":"\\ud83d\\ude00 \\u0000 \\"","b":[[[[{}]]]]}  \n'; } | seed event escapes

# ---- template: selector byte, then NUL-separated fields or a YAML file ---------------------
# Selector: mode in bits 0-2 (0 shipped, 1 subst, 2 yaml, 3 binding, 4 template),
# variant in bits 3-4 (lite, original, skip, none), bit 5 = no event.
fields() { local f; for f in "$@"; do printf '%s\0' "$f"; done; }
{ printf '\x00'
  fields main 'Fix the build [gpu:lite]' 9c8e0f4f1c5e2b6a7d3e4f5a6b7c8d9e0f1a2b3c \
      https://github.com/o/r.git o/r refs/heads/main octocat 72d3162e-cc78-11e3-81ab-4c9367dc0958 \
      123456 '' main 7 opened push default 'No rule matched; lite.' GitHub-Hookshot/044aadd push \
      'pipeline-version=original'
  cat "$gh/push.json"; } | seed template shipped-plain
{ printf '\x08'
  fields '"},{"x":1' '$(tt.params.git-revision) $(uid) ${x} `id`' $'rev\n\t"\\' \
      '[1,2]' '../../etc' 'refs/heads/$(body.after)' "$(printf '\xe2\x80\xae')" '' '' '' '' \
      '-1' '' '' "$(printf 'rule\x7f')" 'reason' '' '' 'git-revision=[{"a":1}]'; } |
    seed template shipped-hostile
{ printf '\x29'
  fields feature/x 'message' abc https://example.com/r.git o/r refs/pull/7/head u d h t base 7 \
      synchronize pull_request r why UA pull_request 'overridden={"k":["v"]}'
  printf '{"pull_request":{"head":{"sha":"abc"}},"commits":[{"id":"c0"},{"id":"c1"}],'
  printf '"after":"sha","number":7,"deleted":false,"repo":"r","labels":["a","b"],'
  printf '"json_like":"{\\"a\\":1}","annotations":{"app.kubernetes.io/name":"n"},'
  printf '"sneaky":"$(tt.params.sha)"}'; } | seed template subst-full
{ printf '\x19'; fields '' '' '' '' '' '' '' '' '' '' '' '' '' '' '' '' '' '' 'nope=1' '{}'; } |
    seed template subst-no-decision
for f in k8s/triggers/trigger-template.yaml k8s/triggers/trigger-binding.yaml \
         "$fx/bad-alias.yaml" "$fx/bad-tag.yaml" "$fx/bad-multi-doc.yaml" \
         "$fx/bad-duplicate-key.yaml" "$fx/prop-template.json"; do
    { printf '\x02'; cat "$f"; } | seed template "yaml-$(basename "${f%.*}")"
done
{ printf '\x02'; printf 'a: [1, -2.5e3, 0x1f, 0777, 1234567890123456, .inf, ~, null, "true", yes]\n'; } |
    seed template yaml-scalars
for f in "$fx/subst-binding.yaml" "$fx/bad-binding-exprs.yaml" "$fx/prop-binding.yaml"; do
    { printf '\x03'; cat "$f"; } | seed template "binding-$(basename "${f%.*}")"
done
for f in k8s/triggers/trigger-template.yaml "$fx/deployment-guide-template.yaml" \
         "$fx/bad-undeclared-param.yaml" "$fx/bad-params.yaml"; do
    { printf '\x04'; cat "$f"; } | seed template "template-$(basename "${f%.*}")"
done

# ---- config: the file itself (fuzz_config.c puts k8s/triggers beside it) -------------------
cp config/gpuhook.json "$out/config/shipped"
cp k8s/gpuhook/gpuhook.json "$out/config/k8s"
cat > "$out/config/every-key" <<'JSON'
{
  "listen": "[::1]:0",
  "log_level": "debug",
  "tls": {"cert_file": "/dev/null", "key_file": "/dev/null"},
  "max_body_bytes": 1024,
  "shutdown_grace_seconds": 0,
  "github": {"secret_files": ["a", "b"], "events": ["push", "pull_request", "ping", "workflow_dispatch"]},
  "trigger": {"token_file": "t", "default_repo_url": "https://example.com/r.git"},
  "kubernetes": {"mode": "url", "url": "https://127.0.0.1:6443", "namespace": "ci",
                 "token_file": "tok", "ca_file": "ca", "proxy": "http://proxy:3128",
                 "timeout_seconds": 9},
  "template": "../k8s/triggers/trigger-template.yaml",
  "bindings": "../k8s/triggers/trigger-binding.yaml",
  "selection": {
    "default": "original",
    "rules": [
      {"name": "a", "when": {"event": ["push", "trigger"], "branch": "release/*",
                             "base_branch": "[mr]ai?n", "tag": "v*", "repository": "O/*",
                             "label": "gpu:*", "message_contains": "[x]",
                             "changed_path": "docs/**"}, "variant": "skip"},
      {"name": "b", "variant": "lite"}
    ],
    "gpu_fit": {"lite_min_free_mib": 0, "original_min_free_mib": 80000, "on_insufficient": "reject"}
  },
  "spool_dir": "/nonexistent/spool",
  "spool_max_age_hours": 1,
  "spool_retry_after_max_seconds": 60,
  "gpu": {"refresh_seconds": 3600, "required": true}
}
JSON
printf '{"github":{"secret_files":["s"]},"kubernetes":{"mode":"dry-run"},"template":"../k8s/triggers/trigger-template.yaml","bindings":"../k8s/triggers/trigger-binding.yaml"}' |
    seed config minimal-dry-run
printf '{"listen":"x","github":{"secret_files":[]},"kubernetes":{"mode":"in-cluster"},"selection":{"rules":[{"name":"a","when":{"event":"nope","branch":"a\\\\"}},{"name":"a"}],"gpu_fit":{"on_insufficient":"x"}},"max_body_bytes":1e300,"gpu":{"refresh_seconds":1.5},"x":1}' |
    seed config every-error

# ---- request: "METHOD TARGET [CHUNK]", header lines, a blank line, the body ----------------
req() { printf '%s\n' "$@"; printf '\n'; }
webhook() { # EVENT FILE [CHUNK] [CONTENT-TYPE]
    req "POST /webhook${3:+ $3}" "Content-Type: ${4:-application/json}" "X-GitHub-Event: $1" \
        "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958" "X-GitHub-Hook-ID: 123456" \
        "User-Agent: GitHub-Hookshot/044aadd" "X-Hub-Signature-256: sha256=auto" \
        "Content-Length: auto"
    cat "$2"
}
webhook push "$gh/push.json" | seed request webhook-push
webhook push "$gh/push_with-new-branch.json" 7 | seed request webhook-push-chunked
webhook pull_request "$gh/pull_request_opened.json" | seed request webhook-pull-request-opened
webhook pull_request "$gh/pull_request_labeled.json" 100 | seed request webhook-pull-request-labeled
webhook ping "$gh/ping.json" | seed request webhook-ping
webhook issue_comment "$gh/issue_comment_created.json" | seed request webhook-not-enabled
{ req "POST /webhook" "Content-Type: application/x-www-form-urlencoded" "X-GitHub-Event: push" \
      "X-GitHub-Delivery: d-form" "X-Hub-Signature-256: sha256=auto" "Content-Length: auto"
  printf 'payload='; urlencode < "$gh/push.json"; } | seed request webhook-form
body='{"ref":"refs/heads/main","after":"abc","repository":{"clone_url":"https://github.com/o/r.git"},"head_commit":{"message":"[skip gpu]"}}'
{ req "POST /webhook?dry_run=1 3" "Content-Type: application/json; charset=utf-8" \
      "X-GitHub-Event: push" "X-GitHub-Delivery: d1" \
      "X-Hub-Signature-256: sha256=$(printf '%s' "$body" | hmac "$secret")" \
      "Content-Length: ${#body}" "X-Request-Id: req-1"
  printf '%s' "$body"; } | seed request webhook-really-signed
{ req "POST /webhook" "Content-Type: application/json" "X-GitHub-Event: push" \
      "X-GitHub-Delivery: d2" "Transfer-Encoding: chunked"
  printf '{}'; } | seed request webhook-unsigned-chunked
{ req "POST /webhook" "Content-Length: 2" "Content-Length: 2" "X-GitHub-Event: push"
  printf '{}'; } | seed request two-content-lengths
trig='{"revision":"9c8e0f4","variant":"original","branch":"main","repo_url":"https://github.com/o/r.git","params":{"pipeline-version":"lite"}}'
{ req "POST /trigger?dry_run=true&verbose" "Authorization: Bearer auto" \
      "Content-Type: application/json" "Idempotency-Key: key-1" "Content-Length: auto"
  printf '%s' "$trig"; } | seed request trigger-preview
{ req "POST /trigger 5" "Authorization: Bearer fuzz-trigger-token" \
      "Content-Type: application/json;charset=utf-8" "Content-Length: auto"
  printf '{"revision":"abc"}'; } | seed request trigger-create
{ req "POST /trigger" "Authorization: Bearer wrong" "Content-Type: application/json" \
      "Content-Length: 2"
  printf '{}'; } | seed request trigger-wrong-token
req "GET /healthz" | seed request healthz
req "HEAD /readyz" "X-Request-Id: probe" | seed request readyz
req "GET /gpu?verbose=1" | seed request gpu
req "GET /metrics" | seed request metrics
req "DELETE /webhook" "Content-Length: 0" | seed request method-not-allowed
req "GET /nope?x" "Content-Length: 1" | seed request not-found

# Retry-After values: delta-seconds and RFC 9110's three date forms (fuzz_retryafter).
printf '120' > "$out/retryafter/delta-120"
printf '0' > "$out/retryafter/delta-0"
printf ' 5\r\n' > "$out/retryafter/blanks"
printf 'Sun, 06 Nov 1994 08:49:47 GMT' > "$out/retryafter/imf-fixdate"
printf 'Sunday, 06-Nov-94 08:50:37 GMT' > "$out/retryafter/rfc850"
printf 'Sun Nov  6 08:51:37 1994' > "$out/retryafter/asctime"
printf 'Fri, 31 Dec 9999 23:59:59 GMT' > "$out/retryafter/far-future"

# List-and-watch bodies (fuzz_kwatch): chunk byte, limit byte, a List, NUL, a watch body.
kw_run() { # NAME RV [SPEC_STATUS]: a PipelineRun as the API sends it
    printf '{"apiVersion":"tekton.dev/v1","kind":"PipelineRun","metadata":{"name":"%s","namespace":"gpu-runs","resourceVersion":"%s","labels":{"gpuhook.dev/variant":"lite"}},"spec":{"status":"%s"}}' "$1" "$2" "${3:-}"
}
kw_list() { printf '{"kind":"PipelineRunList","apiVersion":"tekton.dev/v1","metadata":{"resourceVersion":"%s"},"items":[%s]}' "$1" "$2"; }
{ printf '\x07\x0f'; kw_list 10 "$(kw_run a 5),$(kw_run b 9 PipelineRunPending)"; printf '\0'
  printf '{"type":"ADDED","object":%s}\n' "$(kw_run c 11)"
  printf '{"type":"MODIFIED","object":%s}\r\n' "$(kw_run b 12)"
  printf '{"type":"BOOKMARK","object":{"kind":"PipelineRun","apiVersion":"tekton.dev/v1","metadata":{"resourceVersion":"13","annotations":{"k8s.io/initial-events-end":"true"}}}}\n'
  printf '{"type":"DELETED","object":%s}\n' "$(kw_run a 14)"
  printf '{"type":"MODIFIED","object":%s' "$(kw_run c 15)"; } > "$out/kwatch/events-and-partial-line"
{ printf '\x01\x03'; kw_list 20 "$(kw_run a 20)"; printf '\0'
  printf '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 20 (25)","reason":"Expired","code":410}}\n'
  printf '{"type":"ADDED","object":%s}\n' "$(kw_run late 26)"; } > "$out/kwatch/gone-410"
{ printf '\x03\x01'; kw_list 30 "$(kw_run a 30)"; printf '\0'
  printf '{"type":"ADDED","object":%s}\n' "$(kw_run over 31)"; } > "$out/kwatch/store-full"
{ printf '\x05\x0f'; kw_list 40 "$(kw_run a 40),$(kw_run a 41)"; printf '\0'
  printf 'not json\n'; } > "$out/kwatch/repeated-name-and-junk"

# The cluster GPU view (fuzz_gpuview): a needs byte, then EndpointSlices, Nodes, Pods and an
# agent's body, split at NUL, from tests/fixtures/gpu.
g=tests/fixtures/gpu
for a in idle busy xid79 no-device; do
    { printf '\x31'; cat $g/endpointslices.json; printf '\0'; cat $g/nodes.json; printf '\0'
      cat $g/pods.json; printf '\0'; cat "$g/agent-h200-$a.json"; } > "$out/gpuview/cluster-$a"
done
{ printf '\x12\0'; cat $g/nodes.json; printf '\0'; cat $g/pods.json; printf '\0'; } > "$out/gpuview/gfd-only"
{ printf '\xf3'; cat $g/endpointslices.json; printf '\0\0\0'; cat $g/agent-h100x2.json; } > "$out/gpuview/agents-h100x2"

# A run's TaskRuns, the run and a Pod (fuzz_ghsummary), split at NUL.
python3 - "$out/ghsummary" <<'PY'
import json, os, sys
out = sys.argv[1]
def tr(task, st, reason, start, end, pod):
    return {"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
            "metadata": {"name": "run-" + task, "labels": {"tekton.dev/pipelineRun": "run",
                                                          "tekton.dev/pipelineTask": task}},
            "status": {"podName": pod, "startTime": start, "completionTime": end,
                       "conditions": [{"type": "Succeeded", "status": st, "reason": reason}]}}
lst = {"kind": "TaskRunList", "apiVersion": "tekton.dev/v1", "metadata": {"resourceVersion": "9"},
       "items": [tr("fetch", "True", "Succeeded", "2026-12-02T10:00:00Z", "2026-12-02T10:01:00Z",
                    "run-fetch-pod"),
                 tr("gpu-test", "False", "Failed", "2026-12-02T10:01:00Z", "2026-12-02T10:05:30Z",
                    "run-gpu-test-pod"),
                 tr("notify|*x*", "False", "TaskRunCancelled", "2026-12-02T10:01:00Z",
                    "2026-12-02T10:02:00Z", "p3")]}
aff = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
       "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                            "values": ["gpu-b"]}]}}]}}
run = {"metadata": {"name": "run", "labels": {"gpuhook.dev/variant": "original"}},
       "spec": {"taskRunTemplate": {"podTemplate": {"affinity": aff}}},
       "status": {"startTime": "2026-12-02T10:00:00Z",
                  "childReferences": [{"name": "run-fetch", "pipelineTaskName": "fetch"},
                                      {"name": "run-gpu-test", "pipelineTaskName": "gpu-test"}],
                  "skippedTasks": [{"name": "summary", "reason": "PipelineRun was stopping"}],
                  "results": [{"name": "summary",
                               "value": "## Lite run\n| step | ok |\n| --- | --- |\n| 6 | no |\n"}],
                  "conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]}}
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "run-gpu-test-pod"},
       "spec": {"nodeName": "gpu-a", "containers": [{"name": "step-run", "resources": {
           "limits": {"nvidia.com/gpu": "1"}}}]}, "status": {"phase": "Failed"}}
def w(name, *parts):
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"\0".join(json.dumps(p).encode() for p in parts))
w("failed-run", lst, run, pod)
run2 = json.loads(json.dumps(run))
run2["status"]["conditions"][0] = {"type": "Succeeded", "status": "True", "reason": "Succeeded"}
run2["status"].pop("skippedTasks")
w("succeeded-run", {"kind": "TaskRunList", "metadata": {}, "items": [lst["items"][0]]}, run2,
  {"spec": {"nodeName": "gpu-b"}})
w("queued-run", {"kind": "TaskRunList", "items": []},
  {"metadata": {"name": "q"}, "spec": {"status": "PipelineRunPending"},
   "status": {"conditions": [{"type": "Succeeded", "status": "Unknown",
                              "reason": "PipelineRunPending"}]}}, {})
PY

du -sh "$out"
