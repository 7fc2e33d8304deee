package house

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ftfs/ftfs"

// The picture sits in the README between these markers, as a Mermaid
// flowchart whose arrows read "importer --> imported".
const (
	beginMark = "<!-- house:begin -->"
	endMark   = "<!-- house:end -->"
)

var arrow = regexp.MustCompile(`^\s*(\w+)(?:\["[^"]*"\])?\s*-->\s*(\w+)(?:\["[^"]*"\])?\s*$`)

// TestTheReadmePictureMatchesTheImports fails when a package starts or
// stops importing another without the README's picture following: a
// picture of the house that has drifted from the code misleads the
// newcomer it is drawn for.
func TestTheReadmePictureMatchesTheImports(t *testing.T) {
	drawn := drawnArrows(t)
	actual := importArrows(t)
	if !slices.Equal(drawn, actual) {
		t.Errorf("the README's picture of the packages (between %s and %s) differs from the imports:\nmissing: %v\nextra:   %v\n\nthe picture as it should read:\n%s",
			beginMark, endMark, minus(actual, drawn), minus(drawn, actual), mermaid(actual))
	}
}

// drawnArrows are the arrows of the README's picture, as "a -> b" with
// package paths relative to the module.
func drawnArrows(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(readme, []byte(beginMark))
	if !ok {
		t.Fatalf("README.md has no %s", beginMark)
	}
	block, _, ok := bytes.Cut(rest, []byte(endMark))
	if !ok {
		t.Fatalf("README.md has no %s", endMark)
	}
	var arrows []string
	sc := bufio.NewScanner(bytes.NewReader(block))
	for sc.Scan() {
		if m := arrow.FindStringSubmatch(sc.Text()); m != nil {
			arrows = append(arrows, fromID(m[1])+" -> "+fromID(m[2]))
		}
	}
	slices.Sort(arrows)
	return arrows
}

// importArrows are the imports between the module's packages, test files
// and the testing tree left out: the picture is of what ships.
func importArrows(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var arrows []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		from := relative(p.ImportPath)
		if from == "" || strings.HasPrefix(from, "testing/") {
			continue
		}
		for _, imp := range p.Imports {
			if to := relative(imp); to != "" {
				arrows = append(arrows, from+" -> "+to)
			}
		}
	}
	slices.Sort(arrows)
	return slices.Compact(arrows)
}

func relative(path string) string {
	rest, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return rest
}

// Mermaid ids cannot hold slashes: "internal/store" is drawn as
// internal_store["internal/store"].
func toID(pkg string) string  { return strings.ReplaceAll(pkg, "/", "_") }
func fromID(id string) string { return strings.ReplaceAll(id, "_", "/") }
func mermaid(arrows []string) string {
	var b strings.Builder
	b.WriteString("```mermaid\nflowchart TD\n")
	var pkgs []string
	for _, a := range arrows {
		from, to, _ := strings.Cut(a, " -> ")
		pkgs = append(pkgs, from, to)
	}
	slices.Sort(pkgs)
	for _, p := range slices.Compact(pkgs) {
		fmt.Fprintf(&b, "  %s[\"%s\"]\n", toID(p), p)
	}
	for _, a := range arrows {
		from, to, _ := strings.Cut(a, " -> ")
		fmt.Fprintf(&b, "  %s --> %s\n", toID(from), toID(to))
	}
	b.WriteString("```\n")
	return b.String()
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
