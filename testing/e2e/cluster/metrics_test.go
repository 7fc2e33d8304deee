package cluster

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestWriteHealthFollowsQuorum checks that /healthz/write tells the truth
// through a quorum loss: with two of three brokers killed both servers
// answer 503 with a reason naming the quorum, and show ftfs_read_only 1;
// with the brokers back they answer 200 again. The brokers' own /healthz
// says nothing of this (the survivor is healthy by itself).
func TestWriteHealthFollowsQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long; skipped with -short")
	}
	ports := ftfstest.FreePorts(t, 2)
	addrs := map[string]string{
		"primary": fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"backup":  fmt.Sprintf("127.0.0.1:%d", ports[1]),
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"),
		ftfstest.RoleArgs("primary", "--metrics-addr", addrs["primary"]),
		ftfstest.RoleArgs("backup", "--metrics-addr", addrs["backup"]))

	writable := func(role string) bool {
		h := ftfstest.CheckWrite(t, addrs[role])
		if h.Status != http.StatusOK || !h.Writable {
			t.Logf("%s: /healthz/write %d: %s", role, h.Status, h.Reason)
			return false
		}
		return h.Brokers.Seen == 3 && h.Brokers.Needed == 2 &&
			ftfstest.Scrape(t, addrs[role]).Sum("ftfs_read_only", nil) == 0
	}
	for role := range addrs {
		ftfstest.Eventually(t, time.Minute, role+" writable with three brokers", func() bool { return writable(role) })
	}

	down := []string{"broker1", "broker2"}
	for _, b := range down {
		sys.Kill(t, b)
	}
	t.Logf("killed %v", down)
	for role, addr := range addrs {
		var last ftfstest.WriteHealth
		ftfstest.Eventually(t, time.Minute, role+" saying the quorum is lost", func() bool {
			last = ftfstest.CheckWrite(t, addr)
			return last.Status == http.StatusServiceUnavailable && !last.Writable &&
				strings.Contains(last.Reason, "quorum lost") && last.Brokers.Seen == 1 && last.Brokers.Needed == 2 &&
				ftfstest.Scrape(t, addr).Sum("ftfs_read_only", nil) == 1
		})
		t.Logf("%s: /healthz/write %d: %s", role, last.Status, last.Reason)
		if status, _ := ftfstest.HTTPGet(t, "http://"+addr+"/healthz"); status != http.StatusOK {
			t.Errorf("%s: /healthz %d while the process serves", role, status)
		}
		ms := ftfstest.Scrape(t, addr)
		if got := ms.Sum("ftfs_writable", nil); got != 0 {
			t.Errorf("%s: ftfs_writable %v while the quorum is lost", role, got)
		}
		if got := ms.Sum("ftfs_brokers_seen", nil); got != 1 {
			t.Errorf("%s: ftfs_brokers_seen %v with one broker up", role, got)
		}
	}

	sys.RestartTogether(t, down...)
	for role := range addrs {
		ftfstest.Eventually(t, 2*time.Minute, role+" writable again", func() bool { return writable(role) })
	}
	// Its word holds: a write succeeds.
	admin := sys.Login(t, "admin")
	sys.PutRandom(t, admin, "after-quorum.bin", 1000)
}
