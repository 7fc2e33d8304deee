// Package e2e is the end-to-end suite: it runs the real ftfs binary as
// separate broker, primary and backup processes (see testing/ftfstest) and
// drives them through the client library and the CLI, killing processes
// along the way.
//
// Tests that measure how long a fault costs (the fault matrix, failover,
// the soak, the quorum tests, limits that must answer promptly) run one at
// a time. Tests that only check what happens run in parallel with each
// other (t.Parallel), two at a time on two cores, after those: each has a
// system of its own, and the suite fits go test's 10 minutes.
package e2e
