"""The package version, in a module of its own: any layer can read it without importing the
package root, which imports the whole app."""

__version__ = "0.1.0"
