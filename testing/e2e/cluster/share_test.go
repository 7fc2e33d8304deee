package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/testing/ftfstest"
)

// TestShareLinkSurvivesKillOfTheGatewaysBroker: the broker a gateway is
// connected to is SIGKILLed in the middle of a download through it; the
// gateway reconnects to another broker and the download completes, byte
// for byte, as the HTTP client sees it.
func TestShareLinkSurvivesKillOfTheGatewaysBroker(t *testing.T) {
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	gw := sys.StartGateway(t, "gateway1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const size = 48 << 20
	data := sys.PutRandom(t, alice, "big.bin", size)
	info, err := alice.Share(ctx, "big.bin", client.ShareOptions{})
	if err != nil {
		t.Fatalf("share: %v", err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw+"/s/"+info.Token, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %v %v", err, resp)
	}
	defer resp.Body.Close()
	got := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("read the first MiB: %v", err)
	}
	holding := sys.BrokersHolding(t, "ftfs-gateway")
	if len(holding) != 1 {
		t.Fatalf("brokers holding the gateway's connection: %v", holding)
	}
	sys.Kill(t, holding[0])
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the download after the gateway's broker died: %v after %d bytes", err, len(got)+len(rest))
	}
	ftfstest.SameBytes(t, data, append(got, rest...))

	// And a range afterwards, through the gateway's new broker.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, gw+"/s/"+info.Token, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", size-3<<20))
	resp2, err := http.DefaultClient.Do(req)
	if err != nil || resp2.StatusCode != http.StatusPartialContent {
		t.Fatalf("a range after the broker's death: %v %v", err, resp2)
	}
	defer resp2.Body.Close()
	tail, err := io.ReadAll(resp2.Body)
	if err != nil {
		t.Fatalf("read the range: %v", err)
	}
	ftfstest.SameBytes(t, data[size-3<<20:], tail)
}

// TestShareLinkDuringQuorumLoss: with two of three brokers down, storage
// has lost its quorum; a link's file is then served from the backup's
// replica, whole and by range, through a gateway on the broker left.
func TestShareLinkDuringQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long; skipped with -short")
	}
	sys := ftfstest.Start(t, ftfstest.Brokers(3), ftfstest.Servers("primary", "backup"))
	sys.AddUser(t, "alice")
	alice := sys.Login(t, "alice")
	gw := sys.StartGateway(t, "gateway1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const size = 3<<20 + 5
	data := sys.PutRandom(t, alice, "kept.bin", size)
	info, err := alice.Share(ctx, "kept.bin", client.ShareOptions{})
	if err != nil {
		t.Fatalf("share: %v", err)
	}
	sys.ReplicaMatches(t)

	down := []string{sys.MetaLeader(t)}
	for _, b := range []string{"broker1", "broker2", "broker3"} {
		if b != down[0] && len(down) < 2 {
			down = append(down, b)
		}
	}
	for _, b := range down {
		sys.Kill(t, b)
	}
	get := func(rng string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw+"/s/"+info.Token, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, nil // broken off: asked again
		}
		return resp.StatusCode, body
	}
	var body []byte
	ftfstest.Eventually(t, 2*time.Minute, "the link served during the quorum loss", func() bool {
		var status int
		status, body = get("")
		return status == http.StatusOK
	})
	ftfstest.SameBytes(t, data, body)
	status, body := get(fmt.Sprintf("bytes=%d-", 2<<20+7))
	if status != http.StatusPartialContent {
		t.Fatalf("a range during the quorum loss: status %d %q", status, body)
	}
	ftfstest.SameBytes(t, data[2<<20+7:], body)
}
