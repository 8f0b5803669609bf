# Native addon: see native/blockgate_native.c and docs/native.md.
# Plain Node-API (C, no node-addon-api): ABI-stable across Node versions.
{
  "targets": [
    {
      "target_name": "blockgate_native",
      "sources": ["native/blockgate_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration"],
      "conditions": [
        ["OS!='linux'", {"sources!": ["native/blockgate_native.c"]}]
      ]
    }
  ]
}
