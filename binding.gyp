{
  "targets": [
    {
      "target_name": "sd_notify",
      "conditions": [
        [
          "OS=='linux'",
          {
            "sources": [
              "native/sd_notify.c"
            ],
            "cflags": [
              "-O2",
              "-Wall"
            ]
          },
          {
            "type": "none"
          }
        ]
      ]
    },
    {
      "target_name": "malloc_tune",
      "conditions": [
        [
          "OS=='linux'",
          {
            "sources": [
              "native/malloc_tune.c"
            ],
            "cflags": [
              "-O2",
              "-Wall"
            ]
          },
          {
            "type": "none"
          }
        ]
      ]
    }
  ]
}
