module calls-e2e/mmclient

go 1.19
