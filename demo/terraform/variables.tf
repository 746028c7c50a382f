# Inputs of the AWS demo. The defaults match the Nomad files in ../nomad; if you change region
# or cluster_name, change the plugin block in ../nomad/client-1.hcl and client-2.hcl to match.

variable "region" {
  description = "AWS region for every resource; the plugin block's region must be the same."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  description = "Name of the ECS cluster the Nomad clients run tasks in (the plugin block's cluster)."
  type        = string
  default     = "nomad-remote-driver-demo"
}

variable "task_family" {
  description = "Family of the Fargate task definition the demo job runs (job: task_definition = \"<family>:<revision>\")."
  type        = string
  default     = "nomad-remote-driver-demo"
}

variable "vpc_cidr" {
  description = "CIDR block of the demo VPC; the two public subnets take the first two /24s of it."
  type        = string
  default     = "10.80.0.0/16"
}

variable "http_ingress_cidr" {
  description = "Who may reach the demo web server on port 80. Narrow it to your own address (x.x.x.x/32) if you like."
  type        = string
  default     = "0.0.0.0/0"
}

variable "ecs_task_definition_file" {
  description = "Container definitions JSON of the task definition, relative to this directory. ./files/updated-demo.json registers the next revision (the update step)."
  type        = string
  default     = "./files/base-demo.json"
}

variable "log_retention_days" {
  description = "How long CloudWatch Logs keeps the container's output."
  type        = number
  default     = 3
}

variable "create_nomad_client_user" {
  description = "Also create an IAM user that has only the Nomad client policy, with an access key for the Nomad clients (the key's secret ends up in the Terraform state)."
  type        = bool
  default     = false
}
