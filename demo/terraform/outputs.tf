# The values the Nomad job needs: put them into ../nomad/demo-ecs.nomad (see ../README.md, step 5).

output "subnet_ids" {
  description = "The two public subnets: the job's aws_vpc_configuration.subnets."
  value       = aws_subnet.public[*].id
}

output "security_group_id" {
  description = "The task's security group: the job's aws_vpc_configuration.security_groups."
  value       = aws_security_group.task.id
}

output "task_definition" {
  description = "family:revision of the current task definition: the job's task_definition."
  value       = "${aws_ecs_task_definition.demo.family}:${aws_ecs_task_definition.demo.revision}"
}

output "cluster_name" {
  description = "The ECS cluster: the plugin block's cluster in ../nomad/client-1.hcl and client-2.hcl."
  value       = aws_ecs_cluster.demo.name
}

output "log_group" {
  description = "CloudWatch Logs group with the container's output."
  value       = aws_cloudwatch_log_group.task.name
}

output "nomad_client_policy_json" {
  description = "IAM policy with exactly what the plugin calls; attach it to whatever identity the Nomad clients use."
  value       = data.aws_iam_policy_document.nomad_client.json
}

output "nomad_client_policy_arn" {
  description = "The same policy as a managed policy, ready to attach to a user or an instance role."
  value       = aws_iam_policy.nomad_client.arn
}

output "nomad_client_access_key_id" {
  description = "Access key id of the Nomad client user (only with -var create_nomad_client_user=true)."
  value       = one(aws_iam_access_key.nomad_client[*].id)
}

output "nomad_client_secret_access_key" {
  description = "Its secret: terraform output -raw nomad_client_secret_access_key"
  value       = one(aws_iam_access_key.nomad_client[*].secret)
  sensitive   = true
}
