variable "name_prefix" {
  description = "Prefix of every resource name, `<project>-<env>`."
  type        = string
}
