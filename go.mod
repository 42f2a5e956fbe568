module github.com/narwhal-init/narwhal

go 1.26.8

require (
	github.com/kelseyhightower/envconfig v1.4.0
	github.com/lmittmann/tint v1.2.1
	golang.org/x/sys v0.49.0
)
