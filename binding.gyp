{
  "targets": [
    {
      "target_name": "sd_notify",
      "conditions": [
        [
          "OS=='linux'",
          {
            "sources": [
              "addons/sd_notify.c"
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
              "addons/malloc_tune.c"
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
