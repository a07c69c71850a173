// Package integration holds s3mount's end-to-end tests: the real binary
// mounted in daemon mode against a local versitygw (and, for key shapes
// versitygw cannot store, an in-process gofakes3). They need the build tag:
//
//	go test -tags integration -count=1 ./test/...
package integration
