module github.com/narwhal-init/narwhal/bench

go 1.26.8

require github.com/narwhal-init/narwhal v0.0.0-00010101000000-000000000000

require golang.org/x/sys v0.49.0 // indirect

replace github.com/narwhal-init/narwhal => ../
