from services.compliance_judge.app import service

service.main()
