{
  "targets": [
    {
      "target_name": "sd_notify",
      "conditions": [
        ["OS=='linux'", {"sources": ["native/sd_notify.c"], "cflags": ["-O2", "-Wall"]}, {"type": "none"}]
      ]
    }
  ]
}
