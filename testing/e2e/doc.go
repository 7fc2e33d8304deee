// Package e2e is the end-to-end suite: it runs the real ftfs binary as
// separate broker, primary and backup processes (see testing/ftfstest) and
// drives them through the client library and the CLI, killing processes
// along the way.
//
// Tests that measure how long a fault costs (failover, the soak, limits
// that must answer promptly) run one at a time. Tests that only check what
// happens run in parallel with each other (t.Parallel), two at a time on
// two cores, after those: each has a system of its own. The tests on
// three-broker clusters (the fault matrix, quorum loss, restores) are in
// testing/e2e/cluster, and those of put -r in testing/e2e/tree, so that
// each suite fits go test's 10 minutes.
package e2e
