// Package e2e is the end-to-end suite: it runs the real ftfs binary as
// separate broker, primary and backup processes (see testing/ftfstest) and
// drives them through the client library and the CLI, killing processes
// along the way.
package e2e
