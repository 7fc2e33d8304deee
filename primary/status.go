package primary

import (
	"github.com/ftfs/ftfs/subjects"
)

// status reports this instance, its broker and the files bucket: what the
// old intermediate server monitored, now readable by any user.
func (s *Server) status(c *call) (any, error) {
	st := subjects.StatusReply{
		Instance: s.instance,
		Role:     s.cfg.Role,
		Version:  Version,
		Started:  s.started,
		Errors:   s.errors.Load(),
		Broker: subjects.BrokerStatus{
			Name:    s.nc.ConnectedServerName(),
			URL:     s.nc.ConnectedUrlRedacted(),
			Cluster: s.nc.ConnectedClusterName(),
		},
		Brokers: s.nc.Servers(),
		Bucket:  subjects.BucketStatus{Name: s.cfg.Bucket},
	}
	info, err := s.stream.Info(c.ctx)
	if err != nil {
		return nil, wrapStorage("bucket info", err)
	}
	st.Bucket.Bytes = info.State.Bytes
	st.Bucket.Replicas = info.Config.Replicas
	st.Bucket.Storage = info.Config.Storage.String()
	if ci := info.Cluster; ci != nil {
		st.Bucket.Leader = ci.Leader
		for _, p := range ci.Replicas {
			st.Bucket.Peers = append(st.Bucket.Peers, subjects.PeerStatus{Name: p.Name, Current: p.Current, Lag: p.Lag, Active: p.Active})
		}
	}
	all, err := s.allObjects(c.ctx)
	if err != nil {
		return nil, err
	}
	st.Bucket.Files = len(all)
	st.Bucket.Uploads = s.openUploads(c.ctx)
	if s.cfg.Replica != nil {
		r := s.cfg.Replica()
		st.Replica = &r
	}
	return st, nil
}
