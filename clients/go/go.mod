module normd.dev/go/normd

go 1.19
