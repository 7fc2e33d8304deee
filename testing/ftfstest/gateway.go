package ftfstest

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// StartGateway starts `ftfs gateway` as the process name ("gateway1", ...)
// on a free port, connected to every broker, and returns its base URL
// once it answers /healthz. Kill, Freeze and Logs take its name.
func (sys *System) StartGateway(t testing.TB, name string) string {
	t.Helper()
	port := FreePorts(t, 1)[0]
	args := []string{"gateway", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--server", sys.URLs()}
	if sys.TLSCA != "" {
		args = append(args, "--tls-ca", sys.TLSCA)
	}
	p := &Process{Name: name, args: args}
	sys.mu.Lock()
	sys.procs[name] = p
	sys.mu.Unlock()
	sys.launch(t, p)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	Eventually(t, time.Minute, name+" serving", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return url
}
