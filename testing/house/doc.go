// Package house keeps the README's picture of the packages true: its test
// compares the picture's arrows with the imports the go command reports.
package house
