// Package cluster is the end-to-end suite's part on three-broker clusters:
// the fault matrix (every process killed or frozen in turn), the loss and
// return of the JetStream quorum, and restores into a cluster. It runs the
// real ftfs binary as separate processes (see testing/ftfstest), as
// testing/e2e does; it is a package of its own so that each suite fits go
// test's 10 minutes. Its tests measure how long faults cost, so they run
// one at a time, and all of them skip with -short.
package cluster
