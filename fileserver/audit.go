package fileserver

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// auditKey is the attribute every audit line carries (audit=true), so that
// one filter on a server's log finds the security record: logins, failed
// and throttled logins, logouts, sessions revoked, users added, removed or
// given a new password, files deleted or renamed, and by whom.
const auditKey = "audit"

// secretWords are parts of attribute names an audit line never carries: a
// password, a token or a session key must not reach a log, and a caller
// that tries loses the attribute rather than leaking it.
var secretWords = []string{"password", "token", "secret", "session", "hash", "key"}

// audit logs a security event at Info with auditKey set. Attributes are
// slog key-value pairs or slog.Attrs; never pass a secret.
func (s *Server) audit(event string, attrs ...any) {
	s.log.LogAttrs(context.Background(), slog.LevelInfo, event, auditAttrs(attrs)...)
}

// auditAttrs turns key-value pairs into attributes, auditKey first, leaving
// out any whose name looks like a secret.
func auditAttrs(args []any) []slog.Attr {
	r := slog.NewRecord(time.Time{}, slog.LevelInfo, "", 0)
	r.Add(args...)
	out := make([]slog.Attr, 0, r.NumAttrs()+1)
	out = append(out, slog.Bool(auditKey, true))
	r.Attrs(func(a slog.Attr) bool {
		if !secretName(a.Key) {
			out = append(out, a)
		}
		return true
	})
	return out
}

func secretName(key string) bool {
	k := strings.ToLower(key)
	if k == auditKey {
		return true // set once, by audit itself
	}
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}
