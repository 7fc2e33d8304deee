package fileserver

// Download notices: the servers tell each other about the downloads they
// serve (subjects.TransferEvents), which the transfer limit counts
// (usage.go).

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
)

// downloadNotice tells the other servers about a download this one serves
// a batch of (subjects.TransferEvents).
type downloadNotice struct {
	Instance string `json:"instance"`
	User     string `json:"user"`
	Download string `json:"download"`
	// LeaseMS is how long, in milliseconds, the download counts from now;
	// 0 means it has ended.
	LeaseMS int64 `json:"lease_ms"`
}

func (s *Server) takeDownloadNotice(m *nats.Msg) {
	var n downloadNotice
	if json.Unmarshal(m.Data, &n) != nil || n.Instance == s.instance || n.User == "" {
		return
	}
	var until time.Time
	if n.LeaseMS > 0 {
		until = time.Now().Add(time.Duration(n.LeaseMS) * time.Millisecond)
	}
	s.usage.download(downloadKey{n.User, n.Download}, until)
}
