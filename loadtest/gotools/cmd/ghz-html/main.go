// Command ghz-html renders a ghz JSON report as ghz's own HTML page, so one ghz run gives
// both the machine-readable report and the one people open in a browser.
package main

import (
	"encoding/json"
	"log"
	"os"

	"github.com/bojand/ghz/printer"
	"github.com/bojand/ghz/runner"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatalf("usage: %s REPORT.json OUT.html", os.Args[0])
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	var report runner.Report
	if err := json.Unmarshal(raw, &report); err != nil {
		log.Fatalf("%s is not a ghz JSON report: %v", os.Args[1], err)
	}
	out, err := os.Create(os.Args[2])
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	p := printer.ReportPrinter{Out: out, Report: &report}
	if err := p.Print("html"); err != nil {
		log.Fatalf("rendering %s: %v", os.Args[2], err)
	}
}
