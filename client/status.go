package client

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/ftfs/ftfs/subjects"
)

// Status is the system as the file servers report it.
type Status struct {
	// Instances are the running file servers, each as it answered
	// subjects.Stats.
	Instances []Instance `json:"instances"`
	// Servers are the file servers' own reports (broker, bucket, replica);
	// one per instance that answered.
	Servers []subjects.StatusReply `json:"servers"`
	// Brokers are the brokers' own reports, one per broker that answered,
	// sorted by name.
	Brokers []subjects.BrokerReport `json:"brokers"`
	// UnreachableBrokers are members of the JetStream meta group, as the
	// brokers that answered know it, that did not answer themselves.
	UnreachableBrokers []string `json:"unreachable_brokers"`
	// Buckets are the streams behind the buckets, each as the first file
	// server that could read it reported it.
	Buckets []subjects.StreamStatus `json:"buckets"`
	// ReadOnly is set when a file server reports that JetStream has lost
	// its quorum.
	ReadOnly bool `json:"read_only"`
	// Warnings are the file servers' warnings (subjects.StatusReply), each
	// once, naming the server that gave it first: "backup: bucket ...".
	Warnings []string `json:"warnings"`
}

// Instance is one file server, as `nats micro stats ftfs` shows it.
type Instance struct {
	ID        string          `json:"id"`
	Role      string          `json:"role"`
	Version   string          `json:"version"`
	Started   time.Time       `json:"started"`
	Endpoints []EndpointStats `json:"endpoints"`
}

// Requests and Errors sum an instance's endpoints.
func (i Instance) Requests() (requests, errors int) {
	for _, e := range i.Endpoints {
		requests += e.Requests
		errors += e.Errors
	}
	return
}

// EndpointStats are one endpoint's counters.
type EndpointStats struct {
	Name           string        `json:"name"`
	Subject        string        `json:"subject"`
	Requests       int           `json:"requests"`
	Errors         int           `json:"errors"`
	AverageLatency time.Duration `json:"average_latency"`
	LastError      string        `json:"last_error,omitempty"`
}

// gather sends one request and collects every reply for wait.
func (c *Client) gather(ctx context.Context, subject string, body []byte, header nats.Header, wait time.Duration) ([]*nats.Msg, error) {
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer sub.Unsubscribe()
	m := nats.NewMsg(subjects.For(c.user, subject))
	m.Reply, m.Data = inbox, body
	for k, v := range header {
		m.Header[k] = v
	}
	if err := c.nc.PublishMsg(m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var out []*nats.Msg
	deadline := time.Now().Add(wait)
	for {
		r, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return out, nil
		}
		if r.Header.Get(subjects.HeaderStatus) == "503" {
			return out, nil // no responders
		}
		out = append(out, r)
		if ctx.Err() != nil {
			return out, nil
		}
	}
}

// Status reports every file-server instance with its counters, each one's
// view of its broker and the buckets, and every broker's report on itself.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	// Both gathers wait out their whole window: overlap them.
	type gathered struct {
		msgs []*nats.Msg
		err  error
	}
	brokers := make(chan gathered, 1)
	go func() {
		msgs, err := c.gather(ctx, subjects.BrokerInfo, nil, nil, 500*time.Millisecond)
		brokers <- gathered{msgs, err}
	}()
	msgs, err := c.gather(ctx, subjects.Stats, nil, nats.Header{subjects.HeaderSession: []string{c.Token()}}, 500*time.Millisecond)
	br := <-brokers
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	if br.err != nil {
		return st, fmt.Errorf("status: brokers: %w", br.err)
	}
	st.Brokers, st.UnreachableBrokers = brokerReports(br.msgs)
	for _, m := range msgs {
		var s micro.Stats
		if json.Unmarshal(m.Data, &s) != nil {
			continue
		}
		in := Instance{ID: s.ID, Role: s.Metadata[subjects.MetaRole], Version: s.Version, Started: s.Started}
		for _, e := range s.Endpoints {
			in.Endpoints = append(in.Endpoints, EndpointStats{
				Name: e.Name, Subject: e.Subject, Requests: e.NumRequests, Errors: e.NumErrors,
				AverageLatency: e.AverageProcessingTime, LastError: e.LastError,
			})
		}
		st.Instances = append(st.Instances, in)
	}
	slices.SortFunc(st.Instances, func(a, b Instance) int { return strings.Compare(a.Role+a.ID, b.Role+b.ID) })
	// Requests are load-balanced: ask until every instance has answered.
	seen := map[string]bool{}
	for attempt := 0; attempt < 4*max(1, len(st.Instances)) && len(seen) < max(1, len(st.Instances)); attempt++ {
		var r subjects.StatusReply
		if err := c.do(ctx, call{subject: subjects.Status, body: subjects.Empty{}, reply: &r}); err != nil {
			if len(seen) == 0 {
				return st, fmt.Errorf("status: %w", err)
			}
			break
		}
		if !seen[r.Instance] {
			seen[r.Instance] = true
			st.Servers = append(st.Servers, r)
		}
	}
	st.Buckets = buckets(st.Servers)
	seenWarning := map[string]bool{}
	for _, s := range st.Servers {
		st.ReadOnly = st.ReadOnly || s.ReadOnly
		for _, w := range s.Warnings {
			if !seenWarning[w] {
				seenWarning[w] = true
				st.Warnings = append(st.Warnings, s.Role+": "+w)
			}
		}
	}
	return st, nil
}

// brokerReports decodes the brokers' answers, one per broker, and names
// the meta group members missing from them.
func brokerReports(msgs []*nats.Msg) (reports []subjects.BrokerReport, unreachable []string) {
	answered := map[string]bool{}
	for _, m := range msgs {
		var r subjects.BrokerReport
		if json.Unmarshal(m.Data, &r) != nil || r.Name == "" || answered[r.Name] {
			continue
		}
		answered[r.Name] = true
		reports = append(reports, r)
	}
	slices.SortFunc(reports, func(a, b subjects.BrokerReport) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range reports {
		names := []string{r.MetaLeader}
		for _, p := range r.MetaPeers {
			names = append(names, p.Name)
		}
		for _, n := range names {
			if n != "" && !answered[n] && !slices.Contains(unreachable, n) {
				unreachable = append(unreachable, n)
			}
		}
	}
	slices.Sort(unreachable)
	return reports, unreachable
}

// buckets merges the servers' stream reports: JetStream answers the same
// to every server, so the first that read a stream speaks for all, and an
// error counts only when no server could read it.
func buckets(servers []subjects.StatusReply) []subjects.StreamStatus {
	var out []subjects.StreamStatus
	for _, s := range servers {
		for _, st := range s.Streams {
			i := slices.IndexFunc(out, func(o subjects.StreamStatus) bool { return o.Stream == st.Stream })
			switch {
			case i < 0:
				out = append(out, st)
			case out[i].Error != "" && st.Error == "":
				out[i] = st
			}
		}
	}
	return out
}
