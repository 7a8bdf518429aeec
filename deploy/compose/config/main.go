// compose-config loads a Compose file the way `docker compose config` does, with no container
// engine: compose-go's LoadProject (the Compose Specification's reference loader, which Docker
// Compose v2 reads files with) validates it against the specification's schema, interpolates,
// resolves paths, normalizes and checks consistency (e.g. depends_on names a defined service),
// then prints the project as JSON. The project directory is the first file's folder, as for
// `docker compose -f`.
//
//	compose-config deploy/compose/compose.yaml > project.json
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-config COMPOSE_FILE [COMPOSE_FILE ...]")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(os.Args[1:],
		cli.WithWorkingDirectory(filepath.Dir(os.Args[1])),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	if err == nil {
		var project any
		if project, err = options.LoadProject(context.Background()); err == nil {
			encoder := json.NewEncoder(os.Stdout)
			encoder.SetIndent("", "  ")
			err = encoder.Encode(project)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
