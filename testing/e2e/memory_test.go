package e2e

import (
	"crypto/sha256"
	"io"
	"os"
	"testing"
	"time"

	"github.com/ftfs/ftfs/subjects"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// memoryBound is the README's promise: client and file servers stay under
// it whatever the size of the files they move.
const memoryBound = 100 << 20

// TestMemoryStaysBoundedForLargeFiles moves a file several times the bound
// through the CLI (stdin in, stdout out, never held in memory by the test)
// and checks the peak RSS of the CLI and of both file servers.
func TestMemoryStaysBoundedForLargeFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 512 MiB")
	}
	const size = 512 << 20
	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
	cli := sys.AdminCLI(t)

	src := ftfstest.NewStream(size)
	put := cli.Exec(t, src, io.Discard, nil, "put", "-", "huge.bin")
	h := sha256.New()
	get := cli.Exec(t, nil, h, nil, "get", "huge.bin", "-")
	if put.Code != 0 || get.Code != 0 {
		t.Fatalf("put: %d %s; get: %d %s", put.Code, put.Stderr, get.Code, get.Stderr)
	}
	if got := subjects.Digest(h.Sum(nil)); got != src.Digest() {
		t.Fatalf("downloaded digest %s, uploaded %s", got, src.Digest())
	}
	// Let the backup finish its replica copy before reading its peak.
	ftfstest.Eventually(t, 2*time.Minute, "replica of huge.bin", func() bool {
		st, err := os.Stat(sys.ReplicaDir + "/huge.bin")
		return err == nil && st.Size() == size
	})
	report := map[string]int64{"cli put": put.MaxRSS, "cli get": get.MaxRSS}
	for _, role := range []string{"primary", "backup"} {
		rss, err := ftfstest.PeakRSS(sys.Process(role).Pid())
		if err != nil {
			t.Fatal(err)
		}
		report[role] = rss
	}
	for what, rss := range report {
		t.Logf("peak RSS of %s moving %d MiB: %d MiB", what, size>>20, rss>>20)
		if rss > memoryBound {
			t.Errorf("peak RSS of %s is %d MiB, over the %d MiB bound", what, rss>>20, memoryBound>>20)
		}
	}
}
